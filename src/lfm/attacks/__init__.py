"""L-inf adversarial attacks in [0, 1] pixel space, the losses they maximise, and the robustness
evaluation that attacks a trained model over an eps grid (`robustness`)."""

from lfm.attacks.core import linf_pgd, linf_pgd_with_restarts

__all__ = ["linf_pgd", "linf_pgd_with_restarts"]
