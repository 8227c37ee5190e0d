"""Helpers and worker scripts shared by the tests (not tests themselves).

The tests import them as ``support.<module>`` (pytest puts tests/ on ``sys.path``);
worker scripts run in their own processes through :func:`support.workers.run_worker`.
A new helper goes in a module here named after what it holds."""
