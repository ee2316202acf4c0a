"""How linearly separable a CPU study's sets are from their raw pixels: the ceiling a linear probe on
an initialization has to beat to show that the init adds features (docs/cpu_study.md, Table 9).

A multinomial logistic regression (scikit-learn, lbfgs, standardized pixels) on the raw 16x16 grey
pixels of each set, with the study's own train/test splits and sizes. Prints test top-1 (%).

    python benchmarks/pixel_probe.py
"""
from __future__ import annotations

import argparse
import platform


def pixel_probe(name: str, train_samples: int | None, n_per_class: int | None) -> float:
    """Test top-1 (%) of a logistic regression on raw pixels of ``name`` (16x16, grey)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from weightselect.training.data import build_dataset

    opts = {"n_per_class": n_per_class} if n_per_class else {}
    train = build_dataset(name, train=True, img_size=16, **opts)
    test = build_dataset(name, train=False, img_size=16, **opts)
    x, y = train.images.flatten(1).float().numpy(), train.targets.numpy()
    if train_samples:
        x, y = x[:train_samples], y[:train_samples]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x, y)
    return 100.0 * clf.score(test.images.flatten(1).float().numpy(), test.targets.numpy())


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"# {platform.machine()}, {platform.python_version()}; logistic regression on raw 16x16 pixels")
    for name, samples, per_class in (("digits", 500, None), ("symbols", None, 40)):
        print(f"{name}: {pixel_probe(name, samples, per_class):.1f} % test top-1")


if __name__ == "__main__":
    main()
