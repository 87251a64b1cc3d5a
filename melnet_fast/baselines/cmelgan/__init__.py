"""cMelGAN: the genre-conditional, fully convolutional GAN over mel spectrograms of the student report (section
3.2), as a baseline beside MelNet. Train and sample it with `melnet-fast gan train` / `melnet-fast gan sample`
(or melnet_fast.train.GANTrainer); compare it with MelNet with `melnet-fast compare`.
"""

from melnet_fast.baselines.cmelgan.config import PRESETS, CMelGANConfig
from melnet_fast.baselines.cmelgan.losses import discriminator_loss, generator_loss, wrong_labels
from melnet_fast.baselines.cmelgan.model import CMelGAN
from melnet_fast.baselines.cmelgan.networks import Discriminator, Generator


def parameter_table(names=PRESETS, n_labels: int = 1) -> str:
    """A text table of the parameter counts of the given presets with n_labels labels (generator,
    discriminator, total)."""
    lines = [f"{'preset':<8} {'generator':>12} {'discriminator':>14} {'total':>12}  clip"]
    for name in names:
        config = CMelGANConfig.preset(name, n_labels=n_labels)
        g, d = CMelGAN(config).parameter_counts()
        lines.append(f"{name:<8} {g:>12,} {d:>14,} {g + d:>12,}  {config.frames} frames x {config.n_mels} mels "
                     f"({config.seconds:.2f} s at {config.sample_rate} Hz)")
    return "\n".join(lines)


__all__ = ["CMelGAN", "CMelGANConfig", "Generator", "Discriminator", "PRESETS", "discriminator_loss",
           "generator_loss", "wrong_labels", "parameter_table"]
