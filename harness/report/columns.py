"""How each metric column is shown: header with its unit, scale, number format, and which way is better."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Display:
    """Display rule of one metric column: the value shown is ``value * scale`` formatted by ``fmt``."""

    column: str
    header: str
    scale: float = 1.0
    fmt: str = "{:.2f}"
    better: str = "lower"  # "lower", "higher" or "" (no best)

    def format(self, value: float) -> str:
        """Return ``value`` scaled and formatted for a table cell."""
        return self.fmt.format(value * self.scale)


#: Metric columns shown in comparison tables, in order; a column with no value in a suite is hidden.
DISPLAYS: tuple[Display, ...] = (
    Display("params", "Params (M)", 1e-6),
    Display("macs", "MACs (G)", 1e-9, "{:.3f}"),
    Display("flops", "FLOPs (G)", 1e-9, "{:.3f}"),
    Display("macs_nonzero", "Nonzero MACs (G)", 1e-9, "{:.3f}"),
    Display("mac_bytes", "Mem. access (MB)", 1e-6, "{:.1f}"),
    Display("model_bytes", "Model (MB)", 1e-6, "{:.2f}"),
    Display("compress_storage_bytes", "Shared storage (MB)", 1e-6, "{:.2f}"),
    Display("compress_sparsity", "Sparsity (%)", 100.0, "{:.1f}", ""),
    Display("activations", "Acts (M)", 1e-6),
    Display("complexity_coverage", "Op coverage (%)", 100.0, "{:.1f}", ""),
    Display("latency_ms_median", "Latency median (ms)", 1.0, "{:.2f}"),
    Display("latency_ms_iqr", "Latency IQR (ms)", 1.0, "{:.2f}", ""),
    Display("throughput_samples_per_s", "Throughput (img/s)", 1.0, "{:.1f}", "higher"),
    Display("latency_repeats", "Samples", 1.0, "{:.0f}", ""),
    Display("acc_top1", "Top-1 (%)", 100.0, "{:.1f}", "higher"),
    Display("acc_top5", "Top-5 (%)", 100.0, "{:.1f}", "higher"),
    Display("acc_ap", "AP (%)", 100.0, "{:.1f}", "higher"),
    Display("acc_ap50", "AP50 (%)", 100.0, "{:.1f}", "higher"),
    Display("acc_aps", "APs (%)", 100.0, "{:.1f}", "higher"),
    Display("acc_apm", "APm (%)", 100.0, "{:.1f}", "higher"),
    Display("acc_apl", "APl (%)", 100.0, "{:.1f}", "higher"),
    Display("det_pre_ms_median", "Pre (ms)", 1.0, "{:.2f}"),
    Display("det_network_ms_median", "Network (ms)", 1.0, "{:.2f}"),
    Display("det_post_ms_median", "Post (ms)", 1.0, "{:.2f}"),
    Display("det_total_ms_median", "Total (ms)", 1.0, "{:.2f}"),
    Display("det_fps", "FPS (img/s)", 1.0, "{:.1f}", "higher"),
    Display("det_detections_per_image", "Dets/img", 1.0, "{:.1f}", ""),
)

#: Metric columns of the leaderboard (index.html), in order; a column with no value anywhere is hidden.
#: ``acc_ap`` is COCO box AP@[.5:.95] (0–1), shown when a detection suite writes it.
LEADERBOARD_METRICS: tuple[str, ...] = (
    "params", "macs", "flops", "latency_ms_median", "throughput_samples_per_s", "acc_top1", "acc_ap", "det_fps",
)

#: Case fields that, when not at their default, make a leaderboard row a *variant* of its model (besides
#: the protocol fields below): column, how the variant's name shows it, default.
VARIANT_FIELDS: tuple[tuple[str, str, object], ...] = (
    ("precision", "{}", "convert"),
    ("quant", "{}", "none"),
    ("channels_last", "channels_last", False),
    ("compile", "compile={}", "none"),
    ("mode", "{}", "inference"),
    ("norm", "norm={}", "native"),
    ("norm_kwargs", "{}", "{}"),
    ("world_size", "world={}", 1),
    ("postprocess", "post={}", "default"),
    ("box_loss", "box_loss={}", "default"),
    ("negatives", "negatives={}", "default"),
    ("compress", "{}", "none"),
    ("compress_kwargs", "{}", "{}"),
    ("threads", "threads={}", None),
    ("channels", "{}ch", 3),
    ("model_kwargs", "{}", "{}"),
    ("width", "width={}px", None),
)

#: Case fields shown to identify a row, in order.
CASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("model", "Model"),
    ("batch", "Batch"),
    ("resolution", "Input (px)"),
    ("device", "Device"),
    ("dtype", "Dtype"),
)

#: Protocol fields shown only in suites where some row differs from the default (so rows measured under
#: different protocols are never silently side by side): column, header, default value.
PROTOCOL_HEADERS: tuple[tuple[str, str, object], ...] = (
    ("width", "Width (px)", None),
    ("precision", "Precision", "convert"),
    ("quant", "Quant", "none"),
    ("channels_last", "Channels last", False),
    ("compile", "Compile", "none"),
    ("mode", "Mode", "inference"),
    ("threads", "Threads", None),
    ("model_kwargs", "Model kwargs", "{}"),
    ("norm", "Norm", "native"),
    ("norm_kwargs", "Norm options", "{}"),
    ("world_size", "Processes", 1),
    ("postprocess", "Post-processing", "default"),
    ("seed", "Seed", 0),
    ("box_loss", "Box loss", "default"),
    ("negatives", "Negatives", "default"),
    ("compress", "Compression", "none"),
    ("compress_kwargs", "Compression options", "{}"),
)
