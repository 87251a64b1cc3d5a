"""Measures of generated spectrograms for any model that makes them.

    sample_fidelity, Fidelity   per-channel mean and std of generated against real spectrograms, the envelope's
                                rank order, and the share of values at the log floor (fidelity.py)
"""

from melnet_fast.evaluation.fidelity import ChannelMoments, Fidelity, channel_moments, rank_correlation, sample_fidelity

__all__ = ["sample_fidelity", "Fidelity", "channel_moments", "ChannelMoments", "rank_correlation"]
