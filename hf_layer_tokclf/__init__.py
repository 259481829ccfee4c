"""Token classification from a chosen hidden layer of an encoder (BERT, RoBERTa, DeBERTa, ...), as HF models."""

from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from .auto import FAMILIES, AutoLayerConfig, AutoLayerModel, AutoModelForLayerTokenClassification
from .configuration_layer_tokclf import LayerTokenClassificationConfig
from .modeling_layer_tokclf import BertForLayerTokenClassification, BertLayerModel
from .pipeline_layer_tokclf import LayerTokenClassificationPipeline

__version__ = "0.1.0"

# Registration makes the Auto classes resolve our model types in this process; the auto-class
# markers make save_pretrained write `auto_map` and copy the three code files beside the weights,
# so that people without this package load the model with trust_remote_code=True.
for _family in FAMILIES.values():
    AutoConfig.register(_family.model_type, _family.config_class, exist_ok=True)
    AutoModelForTokenClassification.register(_family.config_class, _family.classifier_class, exist_ok=True)
    AutoModel.register(_family.config_class, _family.encoder_class, exist_ok=True)
    _family.config_class.register_for_auto_class()
    _family.classifier_class.register_for_auto_class("AutoModelForTokenClassification")
    _family.encoder_class.register_for_auto_class("AutoModel")

__all__ = [
    "AutoLayerConfig",
    "AutoLayerModel",
    "AutoModelForLayerTokenClassification",
    "BertForLayerTokenClassification",
    "BertLayerModel",
    "LayerTokenClassificationConfig",
    "LayerTokenClassificationPipeline",
    "__version__",
]
