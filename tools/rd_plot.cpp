// RD plot: pipes an embedded matplotlib script into a Python interpreter chosen deliberately.
#include "rd_plot.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

#include "netquant/atomic_file.h"
#include "netquant/error.h"

namespace nq::cli {

namespace {
constexpr const char* kPlotScript = R"PY(
import csv, math, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

csv_path, png_path, title = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [r for r in csv.DictReader(open(csv_path)) if r.get("duplicate") != "1"]
def num(r, k):
    v = r.get(k, "")
    return float(v) if v not in ("", None) else math.nan
def filled(key):
    return any(not math.isnan(num(r, key)) for r in rows)
# The accuracy the points were chosen by: on held-out validation images when the CSV has it, else on the test set.
if filled("accuracy_validation"):
    acc_key, ft_key, accuracy_label = "accuracy_validation", "accuracy_finetuned_validation", "validation accuracy"
else:
    acc_key, ft_key, accuracy_label = "accuracy", "accuracy_finetuned", "test accuracy"
has_acc = filled(acc_key)
series = {}
for r in rows:
    label = r["method"] + ("" if r.get("scope", "global") == "global" else " (" + r["scope"] + ")")
    series.setdefault(label, []).append(r)
pruned = {k for k in series if "(pruned)" in k}
# Demo-style CSVs (pruned and unpruned methods): one panel each, accuracy against ratio. Plain sweeps: the
# same curves against bits per weight and against the compression ratio.
if pruned and len(pruned) < len(series):
    panels = [("unpruned", [k for k in series if k not in pruned], "ratio_huffman"),
              ("pruned", sorted(pruned), "ratio_huffman")]
else:
    panels = [("", sorted(series), "huffman_bits_per_weight"), ("", sorted(series), "ratio_huffman")]

plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "font.family": "serif"})
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.5), constrained_layout=True)
markers = "osD^v<>ph*"
colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
style = {}
for name in sorted(series, key=lambda s: s.replace(" (pruned)", "")):
    base = name.replace(" (pruned)", "")
    if base not in style:
        style[base] = (colors[len(style) % len(colors)], markers[len(style) % len(markers)])
top = -math.inf
for (sub, names, xkey), ax in zip(panels, axes):
    for name in names:
        pts = series[name]
        color, marker = style[name.replace(" (pruned)", "")]
        order = sorted(pts, key=lambda p: num(p, xkey))
        xs = [num(p, xkey) for p in order]
        if has_acc:
            ys = [100 * num(p, acc_key) for p in order]
            top = max([top] + [y for y in ys if not math.isnan(y)])
            ax.plot(xs, ys, marker=marker, color=color, markersize=3.5, linewidth=1.2,
                    label=name.replace(" (pruned)", ""))
            ft = [(num(p, xkey), 100 * num(p, ft_key)) for p in order if not math.isnan(num(p, ft_key))]
            top = max([top] + [y for _, y in ft])  # fine-tuning can lift points above the curve: keep them in view
            if ft:
                ax.plot([x for x, _ in ft], [y for _, y in ft], linestyle="none", marker=marker,
                        markerfacecolor="none", markeredgecolor=color, markersize=6)
        else:
            ax.plot(xs, [num(p, "hw_distortion") for p in order], marker=marker, color=color, markersize=3.5,
                    linewidth=1.2, label=name)
    ax.set_xlabel("Huffman-coded bits per weight" if xkey == "huffman_bits_per_weight" else "compression ratio")
    if xkey == "ratio_huffman":
        ax.set_xscale("log")
        fmt = matplotlib.ticker.FuncFormatter(lambda v, _: "%g\u00d7" % v)
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_formatter(fmt)
    if sub:
        ax.set_title(sub, fontsize=9)
    if has_acc:
        ax.set_ylabel(accuracy_label + " (%)")
    else:
        ax.set_ylabel("Hessian-weighted distortion")
        ax.set_yscale("log")
if has_acc and math.isfinite(top):
    for ax in axes:
        ax.set_ylim(top - 12, top + 1.5)
axes[0].legend(frameon=False, fontsize=7.5, loc="lower left")
note = " (open markers: after fine-tuning)" if has_acc and filled(ft_key) else ""
fig.suptitle(title + note, fontsize=10)
tmp = png_path + ".tmp.png"
try:
    fig.savefig(tmp, dpi=160)
    os.replace(tmp, png_path)
except BaseException:
    if os.path.isfile(tmp):  # a half-written figure goes; anything else in its place is not ours
        os.remove(tmp)
    raise
)PY";

bool python_has_matplotlib(const std::string& python) {
  const std::string cmd = python + " -c 'import numpy, matplotlib' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
}  // namespace

std::string find_python_with_matplotlib() {
  for (const char* candidate : {"/usr/bin/python3", "python3"}) {
    if (python_has_matplotlib(candidate)) return candidate;
  }
  return std::string();
}

void plot_rd_curve(const std::string& csv_path, const std::string& png_path, const std::string& title) {
  const std::string python = find_python_with_matplotlib();
  NQ_CHECK(!python.empty(), ErrorCode::kUnavailable,
           "--plot needs Python 3 with numpy and matplotlib (apt-get install python3-matplotlib)");
  const std::string cmd = python + " - " + shell_quote(csv_path) + " " + shell_quote(png_path) + " " +
                          shell_quote(title);
  FILE* pipe = popen(cmd.c_str(), "w");
  NQ_CHECK(pipe != nullptr, ErrorCode::kIo, "cannot start " << python << " for the plot");
  std::fputs(kPlotScript, pipe);
  const int status = pclose(pipe);
  NQ_CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, ErrorCode::kIo,
           png_path << ": the matplotlib plot failed (status " << status << ")");
}

}  // namespace nq::cli
