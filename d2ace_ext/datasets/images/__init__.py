"""Multi-label image data: PASCAL VOC2007 and MS-COCO 2014 readers, the embedded
digits-mosaic set, precomputed backbone features, and the paper's image transforms.

torchvision (and Pillow) are needed for the image files and transforms; the mosaic and
precomputed features work without image files. Build any of them by name with
:func:`~d2ace_ext.datasets.images.registry.load_image_dataset`.
"""
