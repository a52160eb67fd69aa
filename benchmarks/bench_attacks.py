"""Attack throughput (images/s): our linf_pgd against torchattacks' PGD, same model, batch and
settings, in one run; the two results are also compared for equality.

torchattacks is not one of our dependencies (its requirements would downgrade requests, idna
and urllib3 below what our pins install). Put it beside the project without touching the
environment, then run:
    .venv/bin/pip install --no-deps --target /tmp/torchattacks torchattacks==3.5.1 scipy==1.17.1
    PYTHONPATH=/tmp/torchattacks .venv/bin/python benchmarks/bench_attacks.py [--quick]
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lfm.attacks import linf_pgd
from lfm.models.classification import ClassificationNet

TARGET_RATIO = 1.0  # ours / torchattacks: not slower


def median_seconds(run: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    result = run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch, fewer steps and repeats")
    args = parser.parse_args()
    try:
        import torchattacks
    except ImportError as error:
        raise SystemExit(
            "torchattacks is not importable; see this script's docstring for how to put it beside the project"
        ) from error
    batch, steps, repeats = (32, 5, 2) if args.quick else (128, 10, 3)
    eps, alpha = 8 / 255, 2 / 255
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = ClassificationNet("resnet18", num_classes=10, small_input=True).to(device).eval()
    images = torch.rand(batch, 3, 32, 32, device=device)
    with torch.no_grad():
        labels = model(images).argmax(dim=1)

    def ours() -> torch.Tensor:
        loss = lambda x: F.cross_entropy(model(x), labels)  # noqa: E731 (torchattacks' mean loss)
        return linf_pgd(loss, images, eps=eps, alpha=alpha, steps=steps)

    reference = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    rows = []
    for name, run in (
        ("lfm.attacks.linf_pgd", ours),
        (f"torchattacks {torchattacks.__version__} PGD", lambda: reference(images, labels)),
    ):
        seconds, result = median_seconds(run, repeats)
        rows.append((name, seconds, batch / seconds, result))
    identical = torch.equal(rows[0][3], rows[1][3])
    print(
        f"PGD, L-inf eps 8/255, {steps} steps of 2/255, no random start; ResNet-18 (CIFAR stem), "
        f"batch {batch} x 3 x 32 x 32, {device}, {torch.get_num_threads()} threads, median of {repeats}"
    )
    print(f"{'implementation':<28} {'seconds':>9} {'images/s':>9}")
    for name, seconds, throughput, _ in rows:
        print(f"{name:<28} {seconds:>9.3f} {throughput:>9.1f}")
    ratio = rows[0][2] / rows[1][2]
    verdict = "met" if ratio >= TARGET_RATIO * 0.95 else "MISSED"
    print(f"throughput ratio ours / torchattacks: {ratio:.3f} (target: not slower, within 5% timing noise: {verdict})")
    print(f"adversarial images identical: {identical}")


if __name__ == "__main__":
    main()
