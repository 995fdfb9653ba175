"""The dataset report's PNG plots (matplotlib, Agg backend: no display needed).

``genuine_impostor.png`` (histograms of both similarity sets and the same-person threshold),
``separability.png`` (each identity's nearest other identity), ``pose.png`` (yaw vs pitch of
every face) and ``images_per_identity.png`` (balance).  A plot without data says so in its
frame instead of being left out, so a report always has the same four files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import MissingDependencyError

PLOTS = ("genuine_impostor.png", "separability.png", "pose.png", "images_per_identity.png")


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "report", "the dataset report's plots") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def make_plots(report: dict[str, Any], series: dict[str, np.ndarray], out: Path) -> list[str]:
    """Write the four plots into ``out``; return their file names."""
    plt = pyplot()
    thr = float(report["threshold"])
    label = "similarity (cosine)" if report["metric"] == "cosine" else "similarity (1 − Euclidean distance)"
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        w, h = fig.get_size_inches()           # fixed margins: tight_layout costs more than the drawing
        fig.subplots_adjust(left=0.62 / w, right=1 - 0.15 / w, bottom=0.5 / h, top=1 - 0.3 / h)
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        written.append(name)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    gen, imp = series["genuine"], series["impostor"]
    if gen.size or imp.size:
        both = np.concatenate([gen, imp])
        bins = np.linspace(min(both.min(), thr) - 0.02, max(both.max(), thr) + 0.02, 50)
        if imp.size:
            ax.hist(imp, bins=bins, density=True, alpha=0.6, label=f"impostor (n={imp.size})", color="tab:red")
        if gen.size:
            ax.hist(gen, bins=bins, density=True, alpha=0.6, label=f"genuine (n={gen.size})", color="tab:blue")
        ax.axvline(thr, color="k", ls="--", lw=1, label=f"threshold {thr:g}")
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no pairs of faces to compare")
    ax.set_title(f"genuine vs impostor ({report['encoder']})", fontsize=10)
    save(fig, PLOTS[0])

    fig, ax = plt.subplots(figsize=(6, 3.6))
    near = series["nearest"]
    if near.size:
        ax.hist(near, bins=min(50, max(5, near.size // 2)), color="tab:purple", alpha=0.8)
        ax.axvline(thr, color="k", ls="--", lw=1, label=f"same-person threshold {thr:g}")
        ax.set_xlabel(f"nearest other identity, centroid {label}")
        ax.set_ylabel("identities")
        ax.legend(fontsize=8)
    else:
        _empty(ax, "fewer than two identities with faces")
    ax.set_title("identity separability", fontsize=10)
    save(fig, PLOTS[1])

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    pose = series["pose"]
    pose = pose[np.all(np.isfinite(pose), axis=1)] if pose.size else pose
    if len(pose):
        ax.scatter(pose[:, 0], pose[:, 1], s=8 if len(pose) > 500 else 18, alpha=0.5, color="tab:green")
        ax.set_xlabel("yaw (°)")
        ax.set_ylabel("pitch (°)")
        lim = max(30.0, float(np.abs(pose[:, :2]).max()) + 5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.axhline(0, color="0.8", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
    else:
        _empty(ax, "no faces found")
    ax.set_title("head pose", fontsize=10)
    save(fig, PLOTS[2])

    fig, ax = plt.subplots(figsize=(6, 3.6))
    per = series["per_identity"]
    if per.size <= 60:
        ax.bar(np.arange(per.size), per, color="tab:gray")
        ax.set_xlabel("identity")
    else:
        ax.hist(per, bins=np.arange(per.min(), per.max() + 2) - 0.5, color="tab:gray")
        ax.set_xlabel("images")
    ax.set_ylabel("images" if per.size <= 60 else "identities")
    ax.set_title(f"images per identity ({per.size} identities)", fontsize=10)
    save(fig, PLOTS[3])
    return written
