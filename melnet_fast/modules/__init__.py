"""Modules: the parameter-owning pieces of MelNet, built on the op layer (melnet_fast.ops)."""

from melnet_fast.modules.centralized import CentralizedLayer, CentralizedStack, TextAttention
from melnet_fast.modules.delayed import FrequencyDelayedLayer, TimeDelayedLayer
from melnet_fast.modules.feature_extraction import FeatureExtractionLayer, FeatureExtractionNetwork
from melnet_fast.modules.gmm_head import GMMHead, MixtureParams
from melnet_fast.modules.sweep_lstm import SweepLSTM
from melnet_fast.modules.text_encoder import TextEncoder, TextMemory
from melnet_fast.modules.tier import Tier
from melnet_fast.modules.tier_network import TierNetwork

__all__ = ["SweepLSTM", "TimeDelayedLayer", "FrequencyDelayedLayer", "FeatureExtractionLayer",
           "FeatureExtractionNetwork", "GMMHead", "MixtureParams", "TierNetwork", "Tier",
           "CentralizedLayer", "CentralizedStack", "TextAttention", "TextEncoder", "TextMemory"]
