"""mlpl: pseudo-labeling for massively multilingual speech recognition, as a Transformers model.

Importing this package registers the `mlpl` model type with the Auto classes, so
`AutoModelForCTC.from_pretrained(dir)` and `pipeline("automatic-speech-recognition", model=dir)` work.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
)

from .asr_pipeline import register_asr_pipeline
from .configuration_mlpl import CV61_LANGUAGES, PRESETS, MLPLConfig
from .feature_extraction_mlpl import MLPLFeatureExtractor
from .modeling_mlpl import MLPLCTCOutput, MLPLForCTC, MLPLModel, MLPLPreTrainedModel
from .processing_mlpl import MLPLProcessor
from .tokenization_mlpl import MLPLTokenizer

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    AutoConfig.register("mlpl", MLPLConfig, exist_ok=True)
    AutoModel.register(MLPLConfig, MLPLModel, exist_ok=True)
    AutoModelForCTC.register(MLPLConfig, MLPLForCTC, exist_ok=True)
    AutoFeatureExtractor.register(MLPLConfig, MLPLFeatureExtractor, exist_ok=True)
    AutoTokenizer.register(MLPLConfig, slow_tokenizer_class=MLPLTokenizer, exist_ok=True)
    AutoProcessor.register(MLPLConfig, MLPLProcessor, exist_ok=True)
    # save_pretrained then writes `auto_map` and copies these self-contained modules, so a saved
    # folder also loads with trust_remote_code=True where mlpl is not installed.
    MLPLConfig.register_for_auto_class()
    MLPLForCTC.register_for_auto_class("AutoModelForCTC")
    MLPLFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
    MLPLTokenizer.register_for_auto_class("AutoTokenizer")
    MLPLProcessor.register_for_auto_class("AutoProcessor")
    register_asr_pipeline()  # other sampling rates resampled with soxr, not torchaudio (asr_pipeline.py)


_register_auto_classes()

__all__ = [
    "CV61_LANGUAGES",
    "PRESETS",
    "MLPLConfig",
    "MLPLModel",
    "MLPLForCTC",
    "MLPLCTCOutput",
    "MLPLPreTrainedModel",
    "MLPLFeatureExtractor",
    "MLPLTokenizer",
    "MLPLProcessor",
]
