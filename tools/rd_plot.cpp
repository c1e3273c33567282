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

csv_path, png_path, title = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(csv_path)))
def num(r, k):
    v = r.get(k, "")
    return float(v) if v not in ("", None) else math.nan
has_acc = any(not math.isnan(num(r, "accuracy")) for r in rows)
has_ft = any(not math.isnan(num(r, "accuracy_finetuned")) for r in rows)
ykey = "accuracy" if has_acc else "hw_distortion"
series = {}
for r in rows:
    if r.get("duplicate") == "1":
        continue
    label = r["method"] + ("" if r.get("scope", "global") == "global" else " (" + r["scope"] + ")")
    series.setdefault(label, []).append(r)

plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "font.family": "serif"})
fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2), constrained_layout=True)
markers = "osD^v<>ph*"
for idx, (label, pts) in enumerate(sorted(series.items())):
    m = markers[idx % len(markers)]
    for ax, xkey in zip(axes, ("huffman_bits_per_weight", "ratio_huffman")):
        xs = [num(p, xkey) for p in pts]
        key = "accuracy_finetuned" if has_ft else ykey
        ys = [num(p, key) if not math.isnan(num(p, key)) else num(p, ykey) for p in pts]
        ys = [100 * y for y in ys] if has_acc else ys
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        ax.plot([xs[i] for i in order], [ys[i] for i in order], marker=m, markersize=3.5, linewidth=1.2, label=label)
for ax, xl in zip(axes, ("Huffman-coded bits per weight", "compression ratio")):
    ax.set_xlabel(xl)
    if has_acc:
        ax.set_ylabel("test accuracy (%)" + (" after fine-tuning" if has_ft else ""))
    else:
        ax.set_ylabel("Hessian-weighted distortion")
        ax.set_yscale("log")
axes[1].set_xscale("log")
axes[0].legend(frameon=False, fontsize=8)
fig.suptitle(title, fontsize=10)
tmp = png_path + ".tmp.png"
fig.savefig(tmp, dpi=160)
os.replace(tmp, png_path)
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
