"""Where the shared, never-copied assets are (../shared/assets beside the checkout, README):
the pretrained YOLOv8n weights and the real traffic clips. Computed here once; the processing
library's model search, the stack, the benchmarks and the tests all read these names.
"""

from __future__ import annotations

from pathlib import Path

# The checkout's root (this package sits at its top level, installed editable or copied to /app).
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ASSETS = REPO_ROOT.parent / "shared" / "assets"
SHARED_VIDEOS = SHARED_ASSETS / "videos"
SHARED_MODELS = SHARED_ASSETS / "models"
# The default detector (OpenVINO int8) and the slow sample clip of the demo and the tests.
SHARED_MODEL = SHARED_MODELS / "yolov8n_int8_openvino_model"
SAMPLE_VIDEO = SHARED_VIDEOS / "urban_cctv_640x360_25fps.mp4"
