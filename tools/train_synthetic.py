"""Train the built-in ``synthetic-shapes`` detector and export it in the official YOLOX layout.

Train-only dependency: PyTorch (``pip install torch``; not a runtime dependency of streamd).

    python tools/train_synthetic.py                  # full run (GPU strongly advised; see docs/synthetic.md)
    python tools/train_synthetic.py --smoke --out-dir /tmp/smoke   # a minute on a CPU: the pipeline runs

What it does, all seeded (``--seed``):
1. renders ``--train-images`` frames from scenes with seeds >= TRAINING_SEED_BASE (held-out scenes
   use smaller seeds), at a few frame sizes, letterboxed exactly as the daemon does ("yolox"
   preprocessing: BGR 0-255, top-left, pad 114);
2. trains a small YOLOX-style detector (CSP backbone, PAN neck, decoupled anchor-free head at
   strides 8/16/32) with SimOTA assignment, IoU + objectness + class + L1 losses, AdamW, cosine
   schedule and an EMA of the weights;
3. exports the EMA model to ONNX: input ``images`` [1, 3, S, S], output ``output`` [1, N, 5 + C],
   raw box terms, objectness and class scores sigmoid-ed (what ``YoloxDecoder`` layout "yolox"
   expects), and writes it with the class names into ``--out-dir``;
4. scores the exported model with ONNX Runtime on held-out scenes and prints mAP@0.5 and
   mAP@0.5:0.95.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from streamd.sources.synthetic import CLASSES, TRAINING_SEED_BASE, SyntheticScene  # noqa: E402
from streamd.yolox.preprocess import YOLOX, Preprocessor  # noqa: E402

STRIDES = (8, 16, 32)
MAX_OBJECTS = 8  # the generator places at most 7 shapes per scene
# Frame sizes rendered for training: the demo's 640x480 most often, others so any sensible
# source size letterboxes to object sizes the model has seen.
FRAME_SIZES = ((640, 480), (640, 480), (640, 480), (800, 600), (480, 480), (640, 360), (512, 384))
FRAMES_PER_SCENE = 4000  # frame indices are drawn from [0, FRAMES_PER_SCENE)
MODEL_NAME = "synthetic_shapes"


# ----------------------------------------------------------------------------------------------
# data
def _render_chunk(job: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render ``count`` letterboxed training samples; a pure function of (seed, start)."""
    seed, start, count, input_size = job
    rng = np.random.default_rng([seed, start])
    preprocessor = Preprocessor(YOLOX, input_size, input_size)
    images = np.empty((count, input_size, input_size, 3), np.uint8)
    targets = np.full((count, MAX_OBJECTS, 5), -1.0, np.float32)  # class, x1, y1, x2, y2
    for i in range(count):
        width, height = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
        scene_seed = TRAINING_SEED_BASE + int(rng.integers(0, 1_000_000))
        image, truth = SyntheticScene(scene_seed, width, height).render(int(rng.integers(0, FRAMES_PER_SCENE)))
        canvas, geometry = preprocessor.letterbox(image)
        images[i] = canvas
        k = min(len(truth.class_ids), MAX_OBJECTS)
        targets[i, :k, 0] = truth.class_ids[:k]
        targets[i, :k, 1:] = truth.boxes_xyxy[:k] * geometry.ratio  # top-left letterbox: no offset
    return images, targets


def render_dataset(count: int, input_size: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    chunk = 256
    jobs = [(seed, start, min(chunk, count - start), input_size) for start in range(0, count, chunk)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    else:
        parts = [_render_chunk(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------
# model
class ConvBnAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03), nn.SiLU(inplace=True))


class CspBlock(nn.Module):
    """YOLOX's CSPLayer: half the channels through residual bottlenecks, half straight through."""

    def __init__(self, c_in: int, c_out: int, depth: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = c_out // 2
        self.main = ConvBnAct(c_in, hidden, 1)
        self.side = ConvBnAct(c_in, hidden, 1)
        self.blocks = nn.ModuleList(nn.Sequential(ConvBnAct(hidden, hidden, 1), ConvBnAct(hidden, hidden, 3))
                                    for _ in range(depth))
        self.shortcut = shortcut
        self.merge = ConvBnAct(2 * hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.main(x)
        for block in self.blocks:
            main = main + block(main) if self.shortcut else block(main)
        return self.merge(torch.cat((main, self.side(x)), 1))


class ShapesDetector(nn.Module):
    """A YOLOX-nano-sized detector: ~0.8 M parameters; ``export = True`` gives the ONNX layout."""

    def __init__(self, num_classes: int, width: int = 24, head_width: int = 48) -> None:
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBnAct(3, w // 2, 3, 2), ConvBnAct(w // 2, w, 3, 2), CspBlock(w, w, 1))
        self.dark3 = nn.Sequential(ConvBnAct(w, 2 * w, 3, 2), CspBlock(2 * w, 2 * w, 2))
        self.dark4 = nn.Sequential(ConvBnAct(2 * w, 4 * w, 3, 2), CspBlock(4 * w, 4 * w, 2))
        self.dark5 = nn.Sequential(ConvBnAct(4 * w, 6 * w, 3, 2), CspBlock(6 * w, 6 * w, 1, shortcut=False))
        self.lateral5 = ConvBnAct(6 * w, 3 * w, 1)
        self.top_down4 = CspBlock(3 * w + 4 * w, 3 * w, 1, shortcut=False)
        self.lateral4 = ConvBnAct(3 * w, 2 * w, 1)
        self.top_down3 = CspBlock(2 * w + 2 * w, 2 * w, 1, shortcut=False)
        self.down3 = ConvBnAct(2 * w, 2 * w, 3, 2)
        self.bottom_up4 = CspBlock(2 * w + 2 * w, 3 * w, 1, shortcut=False)
        self.down4 = ConvBnAct(3 * w, 3 * w, 3, 2)
        self.bottom_up5 = CspBlock(3 * w + 3 * w, 4 * w, 1, shortcut=False)
        self.heads = nn.ModuleList(_Head(c, head_width, num_classes) for c in (2 * w, 3 * w, 4 * w))
        self.export = False

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        c3 = self.dark3(self.stem(images))
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        p5 = self.lateral5(c5)
        p4 = self.top_down4(torch.cat((functional.interpolate(p5, scale_factor=2.0, mode="nearest"), c4), 1))
        p4_lateral = self.lateral4(p4)
        out3 = self.top_down3(torch.cat((functional.interpolate(p4_lateral, scale_factor=2.0, mode="nearest"), c3), 1))
        out4 = self.bottom_up4(torch.cat((self.down3(out3), p4_lateral), 1))
        out5 = self.bottom_up5(torch.cat((self.down4(out4), p5), 1))
        maps = [head(x) for head, x in zip(self.heads, (out3, out4, out5))]  # [B, 5+C, H, W] raw
        if not self.export:
            return maps
        # Official YOLOX export: obj/cls sigmoid-ed, [B, 5+C, H*W] per level, cells in (stride,
        # row, column) order, -> [B, N, 5+C].
        flat = [torch.cat((m[:, :4], m[:, 4:].sigmoid()), 1).flatten(2) for m in maps]
        return torch.cat(flat, 2).permute(0, 2, 1)


class _Head(nn.Module):
    def __init__(self, c_in: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = ConvBnAct(c_in, width, 1)
        self.cls_branch = nn.Sequential(ConvBnAct(width, width, 3), ConvBnAct(width, width, 3))
        self.reg_branch = nn.Sequential(ConvBnAct(width, width, 3), ConvBnAct(width, width, 3))
        self.cls_pred = nn.Conv2d(width, num_classes, 1)
        self.reg_pred = nn.Conv2d(width, 4, 1)
        self.obj_pred = nn.Conv2d(width, 1, 1)
        prior = -math.log((1 - 0.01) / 0.01)  # start every cell at p = 0.01: stable early loss
        nn.init.constant_(self.cls_pred.bias, prior)
        nn.init.constant_(self.obj_pred.bias, prior)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        reg_features = self.reg_branch(x)
        return torch.cat((self.reg_pred(reg_features), self.obj_pred(reg_features),
                          self.cls_pred(self.cls_branch(x))), 1)


# ----------------------------------------------------------------------------------------------
# loss
def make_grid(input_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    grids, strides = [], []
    for stride in STRIDES:
        cells = input_size // stride
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        grids.append(torch.stack((xs, ys), -1).reshape(-1, 2))
        strides.append(torch.full((cells * cells,), stride))
    return torch.cat(grids).float().to(device), torch.cat(strides).float().to(device)


def pairwise_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """IoU of xyxy boxes, broadcasting over leading dimensions."""
    top_left = torch.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = torch.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (boxes_a[..., 2:] - boxes_a[..., :2]).clamp(min=0).prod(-1)
    area_b = (boxes_b[..., 2:] - boxes_b[..., :2]).clamp(min=0).prod(-1)
    return intersection / (area_a + area_b - intersection + 1e-9)


class YoloxLoss:
    """YOLOX's losses with SimOTA assignment, vectorised over the batch (GTs padded to G)."""

    def __init__(self, num_classes: int, input_size: int, device: torch.device, center_radius: float = 2.5,
                 topk_candidates: int = 10) -> None:
        self.num_classes = num_classes
        self.grid, self.stride = make_grid(input_size, device)
        self.cell_centre = (self.grid + 0.5) * self.stride[:, None]
        self.center_radius = center_radius
        self.topk_candidates = topk_candidates

    def __call__(self, maps: list[torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = torch.cat([m.float().flatten(2) for m in maps], 2).permute(0, 2, 1)  # [B, N, 5+C]
        raw_box, obj_logit, cls_logit = rows[..., :4], rows[..., 4], rows[..., 5:]
        stride = self.stride[None, :, None]
        centre = (raw_box[..., :2] + self.grid[None]) * stride
        size = torch.exp(raw_box[..., 2:].clamp(max=10.0)) * stride
        pred_boxes = torch.cat((centre - size / 2, centre + size / 2), -1)  # [B, N, 4]

        gt_cls = targets[..., 0].long()  # [B, G]
        gt_boxes = targets[..., 1:]
        valid = gt_cls >= 0
        with torch.no_grad():
            fg, matched_gt = self._assign(pred_boxes.detach(), obj_logit.detach(), cls_logit.detach(),
                                          gt_boxes, gt_cls.clamp(min=0), valid)
        num_fg = max(int(fg.sum()), 1)
        batch_index = torch.arange(rows.shape[0], device=rows.device)[:, None].expand_as(fg)
        target_boxes = gt_boxes[batch_index[fg], matched_gt[fg]]  # [F, 4]
        target_cls = gt_cls[batch_index[fg], matched_gt[fg]]
        fg_pred_boxes = pred_boxes[fg]
        ious = pairwise_iou(fg_pred_boxes, target_boxes)
        loss_iou = (1 - ious ** 2).sum() / num_fg
        loss_obj = functional.binary_cross_entropy_with_logits(obj_logit, fg.float(), reduction="sum") / num_fg
        cls_target = functional.one_hot(target_cls, self.num_classes).float() * ious.detach().clamp(min=0)[:, None]
        loss_cls = functional.binary_cross_entropy_with_logits(cls_logit[fg], cls_target, reduction="sum") / num_fg
        # L1 on the raw terms sharpens localisation (YOLOX turns it on for the last epochs; this
        # short schedule keeps it on throughout).
        fg_stride = self.stride[None].expand_as(fg)[fg][:, None]
        fg_grid = self.grid[None].expand(fg.shape[0], -1, -1)[fg]
        t_centre = (target_boxes[:, :2] + target_boxes[:, 2:]) / 2 / fg_stride - fg_grid
        t_size = torch.log((target_boxes[:, 2:] - target_boxes[:, :2]).clamp(min=1e-3) / fg_stride)
        loss_l1 = functional.l1_loss(raw_box[fg], torch.cat((t_centre, t_size), 1), reduction="sum") / num_fg
        total = 5.0 * loss_iou + loss_obj + loss_cls + loss_l1
        return {"total": total, "iou": loss_iou, "obj": loss_obj, "cls": loss_cls, "l1": loss_l1,
                "fg_per_image": torch.tensor(num_fg / rows.shape[0])}

    def _assign(self, pred_boxes: torch.Tensor, obj_logit: torch.Tensor, cls_logit: torch.Tensor,
                gt_boxes: torch.Tensor, gt_cls: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """SimOTA: each GT takes its dynamic-k cheapest cells; a cell claimed twice goes to the cheaper."""
        centre = self.cell_centre[None, None]  # [1, 1, N, 2]
        boxes = gt_boxes[:, :, None]  # [B, G, 1, 4]
        in_box = ((centre > boxes[..., :2]) & (centre < boxes[..., 2:])).all(-1)  # [B, G, N]
        gt_centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        radius = self.center_radius * self.stride[None, None, :, None]
        in_centre = ((centre - gt_centre).abs() < radius).all(-1)
        candidate = (in_box | in_centre) & valid[..., None]

        ious = pairwise_iou(gt_boxes[:, :, None], pred_boxes[:, None])  # [B, G, N]
        probability = (cls_logit.sigmoid() * obj_logit.sigmoid()[..., None]).sqrt().clamp(1e-6, 1 - 1e-6)
        neg = -torch.log1p(-probability)  # [B, N, C]
        pos_minus_neg = -torch.log(probability) - neg
        cls_cost = neg.sum(-1)[:, None] + torch.gather(
            pos_minus_neg[:, None].expand(-1, gt_cls.shape[1], -1, -1), 3,
            gt_cls[:, :, None, None].expand(-1, -1, pos_minus_neg.shape[1], 1)).squeeze(-1)
        cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~(in_box & in_centre)).float()
        cost = torch.where(candidate, cost, torch.full_like(cost, 1e9))

        k = min(self.topk_candidates, ious.shape[-1])
        dynamic_k = (torch.topk(ious * candidate, k, dim=-1).values.sum(-1).int()).clamp(min=1)  # [B, G]
        cheapest_cost, cheapest = torch.topk(cost, k, dim=-1, largest=False)  # [B, G, k]
        take = (torch.arange(k, device=cost.device) < dynamic_k[..., None]) & (cheapest_cost < 1e8)
        matching = torch.zeros_like(candidate)
        matching.scatter_(2, cheapest, take)
        matching &= valid[..., None]
        matched_cost = torch.where(matching, cost, torch.full_like(cost, float("inf")))
        matched_gt = matched_cost.argmin(1)  # [B, N]: the cheapest GT claiming each cell
        return matching.any(1), matched_gt


# ----------------------------------------------------------------------------------------------
# training
def set_determinism(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def batch_to_tensors(images: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    batch = images[indices].to(device, non_blocking=True)
    batch = batch.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
    return batch, targets[indices].to(device, non_blocking=True)


def train(args: argparse.Namespace) -> nn.Module:
    device = torch.device(args.device)
    started = time.monotonic()
    print(f"rendering {args.train_images} training frames ({args.workers} workers)...", flush=True)
    images_np, targets_np = render_dataset(args.train_images, args.input_size, args.seed, args.workers)
    objects = int((targets_np[..., 0] >= 0).sum())
    print(f"  rendered in {time.monotonic() - started:.1f} s: {objects} labelled objects", flush=True)
    images = torch.from_numpy(images_np)
    targets = torch.from_numpy(targets_np)
    if device.type == "cuda":
        images, targets = images.to(device), targets.to(device)  # ~0.3 MB a frame: fits on the card

    set_determinism(args.seed)
    model = ShapesDetector(len(CLASSES), args.width, args.head_width).to(device)
    model = model.to(memory_format=torch.channels_last)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters / 1e6:.2f} M parameters", flush=True)
    ema = ShapesDetector(len(CLASSES), args.width, args.head_width).to(device).eval()
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    decay_params = [p for n, p in model.named_parameters() if p.ndim > 1]
    other_params = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay_params, "weight_decay": args.weight_decay},
                                   {"params": other_params, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.999))
    warmup = max(1, min(300, args.steps // 10))

    def learning_rate(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    criterion = YoloxLoss(len(CLASSES), args.input_size, device)
    generator = torch.Generator().manual_seed(args.seed)
    amp = device.type == "cuda"
    train_started = time.monotonic()
    for step in range(args.steps):
        if args.max_train_seconds and time.monotonic() - train_started > args.max_train_seconds:
            print(f"WARNING: stopping at step {step}: --max-train-seconds {args.max_train_seconds} reached; "
                  "the schedule did not finish", flush=True)
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        indices = torch.randint(0, images.shape[0], (args.batch_size,), generator=generator)
        batch, batch_targets = batch_to_tensors(images, targets, indices.to(images.device), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            maps = model(batch)
        losses = criterion(maps, batch_targets)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        # EMA with a warm-up ramp (as YOLOX's ModelEMA): early weights are forgotten quickly.
        decay = args.ema_decay * (1 - math.exp(-(step + 1) / 500))
        with torch.no_grad():
            ema_params = list(ema.parameters())
            torch._foreach_lerp_(ema_params, list(model.parameters()), 1 - decay)
            for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
                ema_buffer.copy_(buffer)
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.monotonic() - train_started
            parts = " ".join(f"{k}={float(v.detach()):.3f}" for k, v in losses.items())
            print(f"step {step + 1}/{args.steps} lr={learning_rate(step):.2e} {parts} "
                  f"({elapsed:.0f} s, {(step + 1) / max(elapsed, 1e-9):.1f} steps/s)", flush=True)
    print(f"trained in {time.monotonic() - train_started:.0f} s "
          f"({time.monotonic() - started:.0f} s with rendering) on {device_description(device)}", flush=True)
    return ema.cpu()


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def export_onnx(model: nn.Module, path: Path, input_size: int) -> None:
    model = model.eval()
    model.export = True
    dummy = torch.zeros(1, 3, input_size, input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["output"],
                          opset_version=11, dynamo=False)
    except Exception as error:  # noqa: BLE001 - the TorchScript exporter is gone in some releases
        print(f"TorchScript ONNX export failed ({error}); using the dynamo exporter (opset 18)", flush=True)
        torch.onnx.export(model, (dummy,), str(path), input_names=["images"], output_names=["output"],
                          opset_version=18, dynamo=True, external_data=False)
    model.export = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "streamd/models/data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--train-images", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--ema-decay", type=float, default=0.9995)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--head-width", type=int, default=48)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--eval-scenes", type=int, default=6)
    parser.add_argument("--eval-frames", type=int, default=50, help="frames per held-out scene")
    parser.add_argument("--max-train-seconds", type=float, default=0.0, help="stop early (0: never)")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--checkpoint", type=Path, help="also save the EMA state_dict here")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the pipeline, not the model")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_images, args.steps, args.batch_size, args.log_every = 64, 4, 8, 1
        args.eval_scenes, args.eval_frames = 1, 4
    if args.input_size % 32:
        parser.error("--input-size must be a multiple of 32")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    started = time.monotonic()
    model = train(args)
    onnx_path = args.out_dir / f"{MODEL_NAME}.onnx"
    export_onnx(model, onnx_path, args.input_size)
    (args.out_dir / f"{MODEL_NAME}.names").write_text("".join(f"{name}\n" for name in CLASSES))
    if args.checkpoint:
        torch.save(model.state_dict(), args.checkpoint)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB)", flush=True)

    from streamd.evaluation.synthetic_accuracy import offline_accuracy  # noqa: PLC0415 - needs onnxruntime

    scores = offline_accuracy(onnx_path, seeds=range(args.eval_scenes), frames_per_seed=args.eval_frames)
    print(f"held-out mAP@0.5 = {scores['map50']:.3f}, mAP@0.5:0.95 = {scores['map50_95']:.3f} "
          f"({scores['frames']} frames, ONNX Runtime, no daemon)", flush=True)
    info = {"input_size": args.input_size, "classes": list(CLASSES), "seed": args.seed, "steps": args.steps,
            "batch_size": args.batch_size, "train_images": args.train_images,
            "device": device_description(torch.device(args.device)), "torch": torch.__version__,
            "seconds_total": round(time.monotonic() - started), "offline_map50": round(scores["map50"], 4),
            "offline_map50_95": round(scores["map50_95"], 4)}
    (args.out_dir / f"{MODEL_NAME}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
