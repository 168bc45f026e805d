"""The ladder as a funnel chart (PNG): one bar per step, as wide as the customers who reached it."""

from __future__ import annotations

from pathlib import Path

from schemas.events import STEPS


def draw_funnel(steps: dict[str, int], path: Path, title: str) -> None:
    """Write a deterministic PNG: the same counts always give the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    counts = [steps.get(step, 0) for step in STEPS]
    reached = [sum(counts[i:]) for i in range(len(counts))]  # at this step or above: the funnel narrows
    widest = reached[0] or 1
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for row, (step, count, width) in enumerate(zip(STEPS, counts, reached, strict=True)):
        y = len(STEPS) - 1 - row
        axes.barh(y, width, left=(widest - width) / 2, color=plt.cm.viridis(row / len(STEPS)), height=0.8)
        label = f"{step}: {count} ({width} at or above)"
        axes.text(widest / 2, y, label, ha="center", va="center", color="white", fontsize=10,
                  fontweight="bold", bbox={"facecolor": "black", "alpha": 0.35, "pad": 2, "linewidth": 0})  # fmt: skip
    axes.set_yticks([])
    axes.set_xticks([])
    axes.set_xlim(0, widest)
    for side in ("top", "right", "left", "bottom"):
        axes.spines[side].set_visible(False)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)
