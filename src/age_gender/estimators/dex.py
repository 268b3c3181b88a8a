"""DEX (Rothe et al., IJCV 2018): the VGG-16 age and gender networks published as ONNX files,
run by onnxruntime; the files are not downloaded for the user (see docs/models.md, "DEX")."""

from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.estimators.base import CropEstimator
from age_gender.estimators.onnx_model import onnx_session, run_by_batch
from age_gender.models.card import ModelCard
from age_gender.schema import DEFAULT_MARGIN

DEX_DIR = Path("pretrained_models") / "dex"
DEX_FILES = {
    "age": "vgg_ilsvrc_16_age_imdb_wiki.onnx",  # real age, trained on IMDB-WIKI
    "apparent_age": "vgg_ilsvrc_16_age_chalearn_iccv2015.onnx",  # ChaLearn LAP 2015
    "gender": "vgg_ilsvrc_16_gender_imdb_wiki.onnx",
}
DEX_URL = "https://github.com/onnx/models/tree/main/validated/vision/body_analysis/age_gender"


class DexEstimator(CropEstimator):
    """DEX (Rothe et al., IJCV 2018): the VGG-16 age and gender networks as ONNX, run by
    onnxruntime. Each takes N x 3 x 224 x 224 BGR 0..255 (the face with a 40 % margin on each
    side, as the paper crops it); age is the expected value of a 101-way softmax, gender a
    2-way softmax (0 = female)."""

    CARD = ModelCard("VGG16 (DEX)", 224, "BGR", DEFAULT_MARGIN)  # the paper's 40 % margin

    def __init__(self, age_session, gender_session, name: str):
        super().__init__(self.CARD, name)
        self.sessions = (gender_session, age_session)

    @classmethod
    def load(cls, apparent: bool = False, folder: Path = DEX_DIR) -> "DexEstimator":
        """`dex` (real age) or `dex-apparent` (apparent age): the files must be in `folder`."""
        names = [DEX_FILES["apparent_age" if apparent else "age"], DEX_FILES["gender"]]
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise UserError(
                f"DEX needs {', '.join(str(folder / name) for name in missing)}: download them "
                f"from {DEX_URL} (see README.md)"
            )
        age, gender = (onnx_session(folder / name) for name in names)
        return cls(age, gender, "dex-apparent" if apparent else "dex")

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), np.float32)
        gender, age = (run_by_batch(session, images) for session in self.sessions)
        return gender, age
