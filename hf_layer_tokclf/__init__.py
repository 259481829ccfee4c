"""Token classification from a chosen hidden layer of a BERT encoder, as a Hugging Face model."""

from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from .configuration_layer_tokclf import LayerTokenClassificationConfig
from .modeling_layer_tokclf import BertForLayerTokenClassification, BertLayerModel

__version__ = "0.1.0"

# Registration makes the Auto classes resolve our model_type in this process; the auto-class
# markers make save_pretrained write `auto_map` and copy the two code files beside the weights,
# so that people without this package load the model with trust_remote_code=True.
AutoConfig.register(LayerTokenClassificationConfig.model_type, LayerTokenClassificationConfig, exist_ok=True)
AutoModelForTokenClassification.register(LayerTokenClassificationConfig, BertForLayerTokenClassification, exist_ok=True)
AutoModel.register(LayerTokenClassificationConfig, BertLayerModel, exist_ok=True)
LayerTokenClassificationConfig.register_for_auto_class()
BertForLayerTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
BertLayerModel.register_for_auto_class("AutoModel")

__all__ = [
    "BertForLayerTokenClassification",
    "BertLayerModel",
    "LayerTokenClassificationConfig",
    "__version__",
]
