#!/usr/bin/env bash
# The one prepared GPU run (issue 17): every figure the MFU work needs, in one go, under 8 minutes.
#
#   bash benchmarks/gpu_suite.sh [--out DIR] [--parts a,b,...] [--budget SECONDS] [--tiny]
#
# Run from anywhere: once it has made DIR, the suite works from the repository root, where the
# benchmarks run as `python -m benchmarks.NAME`. Everything printed also goes to DIR/gpu_suite.log
# (DIR: --out, else $OUT/gpu_suite when the device tool's $OUT is set, else gpu_suite_<date>), and
# each benchmark's rows to DIR/<part>.json. Each part prints a "=== part NAME" header and a
# "=== end NAME" line, runs under its own time limit, and a part that fails or runs out of time is
# logged ("!!! part NAME") while the suite goes on. Parts, in the order they run (most needed
# first):
#   env       GPU model, driver, jax/jaxlib/flax/torch versions, date
#   dense     psnr/gan/infer rows, jax:bfloat16:concat against jax:bfloat16:fused, batch 16,
#             HR patch 128 (infer: one 256^2 -> 1024^2 image)
#   decision  which dense block won per row, and the AUTO_DENSE_BLOCK line of
#             esrgan_jax/models/rrdbnet.py to change
#   torch     PyTorch fp32 and AMP bf16 (eager) at the same sizes: the ratios against PyTorch
#   sweep     per-device batch 32 and 64 at patch 128, 16/32/64 at patch 192 (psnr step), gan at
#             32 and 64 (patch 128), with the dense block that won
#   fast      the fast architectures: inference beside RRDBNet at traiNNer-redux's shape (one
#             480x640 input, x4): Compact 16 / 32, SPAN 48 and RRDBNet 23x64, JAX float32 and
#             bfloat16 against PyTorch eager fp32 (benchmarks.fast_models, fast.json; frames/s
#             and MP/s); then the L1 (psnr) train step of Compact 32 and SPAN 48 at batch 16, HR
#             patch 128, JAX against PyTorch eager with Adam, fp32 and bf16 / AMP bf16
#             (benchmarks.benchmark --arch, fast_train_compact.json and fast_train_span.json)
#   video     video upscaling end to end (decode + network + encode + remux) and model-only, in
#             frames/s and realtime factor (benchmarks.video, video.json): 1080p x2 with Compact
#             first (the real-time target), then 480p x4 / x2 and 1080p x4 rows
#   compile   PyTorch torch.compile baselines (fp32, then AMP bf16; infer and psnr rows)
#   degradations  Real-ESRGAN's degradation pipeline, JAX against PyTorch on the GPU, GT 12 x 256
#             and 12 x 400 (benchmarks.degradations speed), and a Real-ESRGAN step row once
#             benchmarks.benchmark has one
#   ldl       LDL's cost per step (configs/esrgan_ldl.py, realesrgan_x4plus_ldl.py): the ESRGAN
#             gan step and Real-ESRGAN's step on a ready batch, each with and without the
#             artifacts term and its EMA forward (rows gan_ldl, realesrgan_ldl; ldl.json). Under
#             --tiny the Real-ESRGAN pair only
#   metrics   PSNR/SSIM/NIQE/FID/KID/IS of a Set14-size set (benchmarks.metrics_speed; not
#             under --tiny, where the Inception pass alone takes minutes on a CPU)
#   float32   jax:float32 psnr/gan/infer rows (batch 16, patch 128)
#   report    one table of every row measured above, with MFU and the JAX / PyTorch ratios
#   summary   what failed or was skipped, and the command that reruns just those parts
# Every benchmark row prints TFLOP/s and MFU from XLA's FLOP count of the lowered program, the
# allocator's peak memory and the compiled program's memory (benchmarks.benchmark).
#
# Time estimate (H100, measured 2026-11-25: full-size RRDBNet train programs compile in 32-47 s,
# infer in 4 s; 16 host cores). Programs: dense 6 (2 groups x psnr, gan, infer), sweep 7 (5 psnr +
# 2 gan), float32 3, PyTorch none (compile: Inductor, about a minute per group, a guess). Each JAX
# child compiles its programs 3-4 at a time (--compile_threads) and the FLOP count runs on the CPU
# beside the GPU work, so per part: env 10 s, dense 2 x 80 = 160 s, decision 5 s, torch 50 s,
# sweep 180 s -- about 6.8 minutes for the parts that matter most, then fast (~150 s, a guess:
# four inference programs per dtype and PyTorch eager, ~60 s; then two psnr runs of four groups,
# each a child that imports its framework, and two small train programs per JAX group, ~90 s),
# video (~300 s, a guess), compile (~120 s), degradations (<= 45 s), ldl (4 train programs,
# ~100 s, a guess), metrics (<= 60 s) and float32 (~100 s) in what is left. --budget (default
# 470 s) is the whole suite's limit: a part that would start with too little time left is
# skipped and named in the summary with the command that runs it later. The compile times assume XLA compiles in
# parallel; if it does not, the sweep is cut by its own limit and reports what it finished.
#
# --tiny: a 1-block, 8-feature model, 1 timed step, small sizes, no gan rows (the VGG19 loss at
# 128 px is too slow on a CPU test), tiny models for the fast and video rows, for
# tests/benchmarks/test_gpu_suite.py on a CPU.

# The part_* functions are called by name ("part_$one_part"), which shellcheck cannot follow.
# shellcheck disable=SC2329
set -uo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(dirname "$(dirname "$SELF")")"
PYTHON="${PYTHON:-python}"
tiny=0
one_part=""  # internal: run just this part (each part runs as its own `bash gpu_suite.sh`)
winner=concat
out=""
parts=""
budget=""

usage() {
  echo "usage: bash benchmarks/gpu_suite.sh [--out DIR] [--parts LIST] [--budget SECONDS] [--tiny]"
}

while (($#)); do
  case "$1" in
    --tiny) tiny=1 ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    --out=*) out="${1#--out=}" ;;
    --parts) parts="${2:?--parts needs a list}"; shift ;;
    --parts=*) parts="${1#--parts=}" ;;
    --budget) budget="${2:?--budget needs seconds}"; shift ;;
    --budget=*) budget="${1#--budget=}" ;;
    --run-part) one_part="$2"; shift ;;
    --winner) winner="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
# --tiny is for a CPU test on a shared machine: its timings are not the point, so its limits are
# ten times the GPU's (a loaded 2-core machine takes 30 s just to import jax and torch).
stretch=1
((tiny)) && stretch=10
budget=${budget:-$((470 * stretch))}
if ! [[ "$budget" =~ ^[0-9]+$ ]]; then
  echo "gpu_suite.sh: --budget must be a whole number of seconds, got $budget" >&2
  exit 2
fi
all_parts="env,dense,decision,torch,sweep,fast,video,compile,degradations,ldl,metrics,float32"
all_parts+=",report,summary"
parts=${parts:-$all_parts}
IFS=, read -ra wanted <<<"$parts"
for name in "${wanted[@]}"; do
  if [[ ",$all_parts," != *",$name,"* ]]; then
    echo "gpu_suite.sh: --parts: unknown part $name; the parts are $all_parts" >&2
    exit 2
  fi
done
if [[ -z "$out" ]]; then
  if [[ -n "${OUT:-}" ]]; then out="$OUT/gpu_suite"; else out="gpu_suite_$(date -u +%Y%m%d_%H%M%S)"; fi
fi
if ! mkdir -p "$out"; then
  echo "gpu_suite.sh: cannot create the output directory $out" >&2
  exit 2
fi
out="$(cd "$out" && pwd)"
log="$out/gpu_suite.log"
cd "$REPO" || exit 2

if ((tiny)); then
  # infer rows at 8^2; train rows at batch 1-2 and patch 32/48 (the gan rows' D needs 128).
  model=(--num_block 1 --num_feat 8 --num_grow_ch 4 --d_feat 8 --infer_size 8 --steps 1 --warmup 1)
  base_size=2x32
  sweep_sizes=1x32,1x48
  train_rows=psnr
  # GT 80: torch's reflect padding of the 21-tap kernels needs at least about 72 pixels.
  degradation_args=(speed --batch 2 --sizes 80 --steps 1 --device cpu)
  realesrgan_args=(--crop_pad_size 80)  # the GT squares the realesrgan row degrades
  fast_args=(--tiny --size 8x12 --steps 1 --warmup 1)  # tiny models: no 23-block RRDBNet
  fast_train_args=(--num_conv 2 --feature_channels 8)  # --num_feat 8 from the model's
  fast_groups=2  # benchmark.py's default groups on a CPU: jax:float32, torch:fp32
  video_args=(--tiny --scales 2)  # 24x32 clips of 4 frames, Compact 2x8 and SPAN 8
  ldl_rows=realesrgan_nodeg,realesrgan_ldl
else
  model=(--steps 10 --warmup 2 --infer_size 256)
  base_size=16x128
  sweep_sizes=32x128,64x128,16x192,32x192,64x192
  train_rows=psnr,gan
  degradation_args=(speed --batch 12 --sizes 256 400 --steps 5 --device cuda)
  realesrgan_args=(--crop_pad_size 400)  # configs/realesrgan_x4plus.py's
  fast_args=(--device cuda --steps 10 --warmup 2)  # --size: 480x640
  fast_train_args=(--num_conv 32 --feature_channels 48)  # realesr-general-x4v3's, SPAN 48
  fast_groups=4  # on a GPU, bf16 and AMP bf16 too
  # 1080p x2 Compact first (the real-time target), then 480p x4 / x2 and 1080p x4.
  video_plan="1080p:2:compact16,compact32,span48;480p:4,2:compact16,compact32,span48,rrdb23x64"
  video_args=(--plan "$video_plan;1080p:4:compact16,compact32,span48"
              --frames 24 --batch_size 8 --preset veryfast)
  ldl_rows=gan,gan_ldl,realesrgan_nodeg,realesrgan_ldl
fi
bench=("$PYTHON" -m benchmarks.benchmark "${model[@]}" --flops_cache "$out/flops")

start_time=$SECONDS
failed=()
skipped=()

# A part: NAME LIMIT_SECONDS; runs part_NAME in its own bash under min(LIMIT, what is left of
# --budget). timeout signals the part's whole process group, benchmark children included.
run_part() {
  local name=$1 limit=$(($2 * stretch))
  if [[ ",$parts," != *",$name,"* ]]; then
    return 0
  fi
  local left=$((budget - (SECONDS - start_time)))
  echo
  echo "=== part $name  (limit ${limit} s, ${left} s of the suite's budget left; $(date -u +%H:%M:%S) UTC)"
  if ((left < 15)); then
    echo "!!! part $name: skipped, the suite's budget is spent"
    skipped+=("$name")
    return 0
  fi
  ((limit > left)) && limit=$left
  local part_start=$SECONDS status=0
  local again=(--run-part "$name" --winner "$winner" --out "$out" --budget "$budget")
  ((tiny)) && again+=(--tiny)
  PART_LIMIT=$limit timeout --kill-after=10 "$limit" bash "$SELF" "${again[@]}" || status=$?
  if ((status == 124 || status == 137)); then
    echo "!!! part $name: timed out after ${limit} s (what it printed above stands)"
    failed+=("$name")
  elif ((status)); then
    echo "!!! part $name: failed with status $status"
    failed+=("$name")
  fi
  echo "=== end $name  ($((SECONDS - part_start)) s)"
}

part_env() {
  date -u +"%Y-%m-%d %H:%M:%S UTC"
  echo "host $(hostname), $(nproc) CPUs"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm \
      --format=csv || echo "nvidia-smi --query-gpu failed"
    nvidia-smi -L || true
  else
    echo "nvidia-smi: not found (no NVIDIA GPU here)"
  fi
  "$PYTHON" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
  try:
    print(name, importlib.import_module(name).__version__)
  except Exception as error:  # pylint: disable=broad-except
    print(name, "not importable:", error)
import jax
print("jax devices:", jax.devices())
import torch
print("torch cuda:", torch.cuda.is_available(), torch.version.cuda, torch.backends.cudnn.version())
EOF
  echo "XLA_FLAGS=${XLA_FLAGS:-} (benchmark.py adds the trainer's defaults, esrgan_jax/runtime/xla_flags.py)"
}

# benchmarks.benchmark with its own limits inside the part's, so that it prints its table before
# the part's limit would cut it off; GROUPS groups share that time equally.
bench_part() {
  local json=$1 groups=$2
  shift 2
  local total=$((PART_LIMIT - 10))
  "${bench[@]}" --json "$out/$json" --total_timeout "$total" \
    --group_timeout $((total / groups)) "$@"
}

part_dense() {
  bench_part dense.json 2 --sizes "$base_size" --rows "$train_rows,infer" --compile_threads 3 \
    --groups jax:bfloat16:concat,jax:bfloat16:fused
}

part_decision() {
  "$PYTHON" -m benchmarks.benchmark --decide_dense "$out/dense.json" \
    | tee "$out/decision.txt"
  local picked
  picked=$(sed -n 's/^winner: //p' "$out/decision.txt")
  [[ -n "$picked" ]] || return 1
  echo "the sweep uses dense_block=$picked"
}

part_torch() {
  bench_part torch.json 2 --sizes "$base_size" --rows "$train_rows,infer" \
    --groups torch:fp32,torch:amp_bf16
}

part_sweep() {
  bench_part sweep.json 1 --sizes "$sweep_sizes" --rows "$train_rows" --compile_threads 4 \
    --groups "jax:bfloat16:$winner"
}

part_fast() {
  local status=0 arch total
  "$PYTHON" -m benchmarks.fast_models "${fast_args[@]}" --json "$out/fast.json" || status=$?
  # The train rows share what is left of the part: Compact half of it, SPAN the rest; each run's
  # groups share its time equally.
  for arch in compact span; do
    total=$((PART_LIMIT - SECONDS - 10))
    [[ "$arch" == compact ]] && total=$((total / 2))
    if ((total < 10)); then
      echo "!!! fast: no time left for the $arch train rows"
      status=1
      continue
    fi
    "${bench[@]}" --arch "$arch" "${fast_train_args[@]}" --sizes "$base_size" --rows psnr \
      --json "$out/fast_train_$arch.json" --total_timeout "$total" \
      --group_timeout $((total / fast_groups)) || status=$?
  done
  return "$status"
}

part_video() {
  # Rows print and are saved as they finish, so a part cut short keeps them.
  "$PYTHON" -m benchmarks.video "${video_args[@]}" --json "$out/video.json"
}

part_compile() {
  bench_part compile.json 2 --sizes "$base_size" --rows psnr,infer \
    --groups torch:fp32:compile,torch:amp_bf16:compile
}

part_degradations() {
  echo "Real-ESRGAN's degradations: JAX on its default backend, torch on ${degradation_args[-1]}"
  "$PYTHON" -m benchmarks.degradations "${degradation_args[@]}" || return
  if grep -q '"realesrgan"' benchmarks/common.py; then  # where the benchmark's rows are named
    bench_part realesrgan.json 1 --sizes "$base_size" --rows realesrgan,realesrgan_nodeg \
      "${realesrgan_args[@]}" --groups "jax:bfloat16:$winner"
  else
    echo "not run: benchmarks.benchmark has no realesrgan row yet"
  fi
}

part_ldl() {
  bench_part ldl.json 1 --sizes "$base_size" --rows "$ldl_rows" --compile_threads 4 \
    --groups "jax:bfloat16:$winner"
}

part_metrics() {
  if ((tiny)); then
    echo "not run under --tiny: the Inception pass of a Set14-size set takes minutes on a CPU"
    return 0
  fi
  "$PYTHON" -m benchmarks.metrics_speed
}

part_float32() {
  # One program at a time, infer first: rows finished before the limit are kept.
  bench_part float32.json 1 --sizes "$base_size" --rows "$train_rows,infer" --groups jax:float32
}

part_report() {
  local runs=()
  for name in dense torch sweep compile float32 realesrgan ldl; do
    [[ -f "$out/$name.json" ]] && runs+=("$out/$name.json")
  done
  ((${#runs[@]})) || { echo "no rows were measured"; return 1; }
  "$PYTHON" -m benchmarks.benchmark --report "${runs[@]}"
}

part_summary() {
  echo "log: $log"
  local files=()
  shopt -s nullglob
  files=("$out"/*.json)
  shopt -u nullglob
  echo "rows in: ${files[*]##*/}"
  echo "suite time: $((SECONDS - start_time)) s of a ${budget} s budget"
  echo "failed parts: ${failed[*]:-none}"
  echo "skipped parts: ${skipped[*]:-none}"
  local again=() name
  for name in "${failed[@]}" "${skipped[@]}"; do
    [[ "$name" == env || "$name" == report ]] || again+=("$name")
  done
  if ((${#again[@]})); then
    local list
    list=$(IFS=,; echo "${again[*]}")
    echo "to run them: bash benchmarks/gpu_suite.sh --out $out --parts env,$list,report,summary" \
      "$( ((tiny)) && echo --tiny)"
  fi
}

main() {
  echo "benchmarks/gpu_suite.sh: parts $parts; budget $budget s; output in $out$( ((tiny)) && echo '; --tiny')"
  run_part env 30
  run_part dense 200
  run_part decision 20
  if [[ -f "$out/decision.txt" ]]; then
    picked=$(sed -n 's/^winner: //p' "$out/decision.txt")
    winner=${picked:-concat}
  fi
  run_part torch 80
  run_part sweep 200
  run_part fast 200
  run_part video 300
  run_part compile 150
  run_part degradations 60
  run_part ldl 120
  run_part metrics 60
  run_part float32 120
  run_part report 30
  if [[ ",$parts," == *",summary,"* ]]; then
    echo
    echo "=== part summary"
    part_summary
    echo "=== end summary"
  fi
  ((${#failed[@]} == 0))  # the suite's status: 1 if any part failed
}

if [[ -n "$one_part" ]]; then
  "part_$one_part"
  exit
fi
main 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
