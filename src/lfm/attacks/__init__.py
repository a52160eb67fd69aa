"""L-inf adversarial attacks in [0, 1] pixel space and the losses they maximise."""

from lfm.attacks.core import linf_pgd, linf_pgd_with_restarts

__all__ = ["linf_pgd", "linf_pgd_with_restarts"]
