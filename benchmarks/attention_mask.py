"""The ALiBi bias as SDPA sees it: ``[H, L, L]`` (3-D) against ``[1, H, L, L]`` (4-D).

    python benchmarks/attention_mask.py --repeat 5             # one attention call
    python benchmarks/attention_mask.py --repeat 2 --models    # and whole models (about 2 minutes)

With a 3-D float mask PyTorch's CPU `scaled_dot_product_attention` takes the unfused math
path; the same bias with a leading batch axis of 1 takes the fused (flash) CPU kernel.
The multiway layer passes the 4-D form.  This script times one attention call both ways
at the tiny and paper-size shapes (forward, and forward + backward), in one run, and
checks that the outputs agree; `--models` also times whole models with the layer's mask
made 3-D again (random weights): a demo-size tiny training step and a vab-encodec forward.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

# (name, batch, heads, length, head width): tiny demo pretraining (8 fps x 4 s + 100 audio
# frames), tiny generation, vab-encodec generation (10 frames + 750 audio frames, cond + uncond)
SHAPES = [
    ("tiny, training batch 32", 32, 4, 132, 32),
    ("tiny, generation batch 2", 2, 4, 132, 32),
    ("vab-encodec, generation batch 2", 2, 16, 760, 64),
]


def best_time(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="runs per measurement; the fastest counts")
    p.add_argument("--models", action="store_true", help="also time whole models (tiny training, vab-encodec forward)")
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    print("| shape | pass | 3-D mask (s) | 4-D mask (s) | speed-up | max difference |")
    print("|---|---|---|---|---|---|")
    for name, b, h, length, d in SHAPES:
        q, k, v = (torch.randn(b, h, length, d, requires_grad=True) for _ in range(3))
        bias = -torch.rand(h, length, length) * 4

        def forward(mask):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def backward(mask):
            forward(mask).sum().backward()

        with torch.no_grad():
            diff = (forward(bias) - forward(bias[None])).abs().max().item()
        for label, fn in (("forward", forward), ("forward + backward", backward)):
            if label == "forward":
                with torch.no_grad():
                    t3, t4 = best_time(lambda: fn(bias), args.repeat), best_time(lambda: fn(bias[None]), args.repeat)
            else:
                t3, t4 = best_time(lambda: fn(bias), args.repeat), best_time(lambda: fn(bias[None]), args.repeat)
            print(f"| {name} | {label} | {t3:.4f} | {t4:.4f} | {t3 / t4:.2f}x | {diff:.1e} |")
    if args.models:
        time_models(args.repeat)


def time_models(repeat: int) -> None:
    """Whole-model times with the multiway layer's 4-D mask, and with it squeezed back to 3-D."""
    import vab.model.multiway as multiway
    from vab.config import load_config
    from vab.model import VAB

    fused = F.scaled_dot_product_attention

    def unfused(q, k, v, attn_mask=None, **kw):
        return fused(q, k, v, attn_mask=attn_mask[0] if attn_mask is not None and attn_mask.dim() == 4 else attn_mask, **kw)

    demo = load_config("tiny", ["codec.frame_rate=25", "codec.codebook_size=64", "data.fps=8", "extract.fps=8"])
    tiny = VAB.from_config(demo, [torch.randn(64, 16) for _ in range(4)], 192, 25.0)
    tiny_in = (torch.randint(0, 64, (32, 4, 100)), torch.randn(32, 32, 192))
    big = VAB.from_config(load_config("vab-encodec"), [torch.randn(1024, 128) for _ in range(4)], 768, 75.0).eval()
    big_in = (torch.randint(0, 1024, (2, 4, 750)), torch.randn(2, 10, 768))

    def train_step():
        tiny(*tiny_in).float().mean().backward()

    def forward():
        with torch.inference_mode():
            big(*big_in)

    print()
    print("| model | work | 3-D mask (s) | 4-D mask (s) | speed-up |")
    print("|---|---|---:|---:|---:|")
    for name, work, call in (("tiny (demo settings)", "training step, batch 32, L = 132", train_step),
                             ("vab-encodec", "forward, batch 2 (cond + uncond), L = 760", forward)):
        times = {}
        for label, attention in (("3-D", unfused), ("4-D", fused)):
            multiway.F.scaled_dot_product_attention = attention
            try:
                times[label] = best_time(call, repeat)
            finally:
                multiway.F.scaled_dot_product_attention = fused
        print(f"| {name} | {work} | {times['3-D']:.3f} | {times['4-D']:.3f} | {times['3-D'] / times['4-D']:.2f}x |")


if __name__ == "__main__":
    main()
