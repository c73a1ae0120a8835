"""Adapters that time the official training steps, imported at run time from a user's checkout.

``degan-bench bench --official PATH`` points at a checkout of NVlabs/stylegan2-ada-pytorch and/or
mit-han-lab/data-efficient-gans (its ``DiffAugment-biggan-cifar/`` folder), or at a folder holding
both. Nothing of that code is vendored: it is imported from PATH when the bench runs, with its
networks built in the configuration of the recipe being compared (same resolution, channels, batch,
lazy intervals), and driven through its own entry points:

- stylegan2-ada-pytorch: ``training.networks.Generator`` / ``Discriminator`` and
  ``training.loss.StyleGAN2Loss.accumulate_gradients`` for the phases ``Gmain``, ``Greg``, ``Dmain``,
  ``Dreg`` at their intervals, with Adam's lr and betas rescaled for lazy regularization, the
  ``nan_to_num`` of the gradients and the G_ema update, as ``training/training_loop.py`` runs them per
  minibatch (no augmentation pipe: the comparison is the plain StyleGAN2 step). ``fp16_res`` picks the
  numerics: 0 = fp32 everywhere (our paper numerics), 4 = the official paper256 setting (fp16 in the 4
  highest resolutions, CUDA only). The official code compiles its fused CUDA ops (``bias_act``,
  ``upfirdn2d``) on first use; whether they loaded is reported (without them, and on the CPU, it runs
  its reference implementation).
- DiffAugment-biggan-cifar: ``BigGAN.Generator`` / ``Discriminator`` / ``G_D`` built from its own
  ``utils.prepare_parser()`` with the script flags of the recipe, ``utils.ema`` and
  ``train_fns.GAN_training_function`` (``num_D_steps`` D steps on their own reals, then the G step and
  the EMA update), called once per iteration as ``train.py`` does.

Both code bases use generic top-level module names (``dnnlib``, ``training``, ``utils``, ...), so each
is imported into its own module namespace, swapped into ``sys.modules`` only while its code runs.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from degan_bench.errors import DeganError
from degan_bench.recipes.loader import ResolvedRecipe

STYLEGAN2_ADA = "stylegan2-ada-pytorch"
BIGGAN_CIFAR = "DiffAugment-biggan-cifar"


class CodeBase:
    """A checkout whose top-level modules live in ``sys.modules`` only inside :meth:`active`."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root.resolve()
        self.top_level = sorted(
            {p.stem for p in self.root.glob("*.py")}
            | {p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.py"))}
        )
        self._modules: dict[str, types.ModuleType] = {}

    def _owned(self, name: str) -> bool:
        return any(name == top or name.startswith(top + ".") for top in self.top_level)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        others = {name: mod for name, mod in sys.modules.items() if self._owned(name)}
        for name in others:
            del sys.modules[name]
        sys.modules.update(self._modules)
        sys.path.insert(0, str(self.root))
        try:
            yield
        finally:
            sys.path.remove(str(self.root))
            self._modules = {name: mod for name, mod in sys.modules.items() if self._owned(name)}
            for name in self._modules:
                del sys.modules[name]
            sys.modules.update(others)

    def commit(self) -> str | None:
        """The checkout's git commit, when it is a git work tree."""
        import subprocess

        try:
            done = subprocess.run(
                ["git", "-C", str(self.root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() or None if done.returncode == 0 else None


def find_code_bases(paths: list[Path]) -> dict[str, CodeBase]:
    """The official code bases found at or one level below each of ``paths``."""
    found: dict[str, CodeBase] = {}
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise DeganError(
                f"--official {path}: no such directory",
                fix="give the path of a stylegan2-ada-pytorch or data-efficient-gans checkout",
            )
        candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
        for root in candidates:
            if (root / "training" / "loss.py").is_file() and (root / "torch_utils").is_dir():
                found.setdefault(STYLEGAN2_ADA, CodeBase(STYLEGAN2_ADA, root))
            for sub in (root, root / "DiffAugment-biggan-cifar"):
                if (sub / "train_fns.py").is_file() and (sub / "BigGAN.py").is_file():
                    found.setdefault(BIGGAN_CIFAR, CodeBase(BIGGAN_CIFAR, sub))
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise DeganError(
            f"--official {shown}: neither stylegan2-ada-pytorch (training/loss.py) nor "
            "DiffAugment-biggan-cifar (train_fns.py) found there",
            fix="clone NVlabs/stylegan2-ada-pytorch and/or mit-han-lab/data-efficient-gans; pass their paths",
        )
    return found


def _import(codebase: CodeBase, module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and not codebase._owned(err.name):
            raise DeganError(
                f"the official {codebase.name} code at {codebase.root} needs the package {err.name!r}",
                fix=f"pip install {err.name} (a dependency of the official code, not of degan-bench)",
            ) from None
        raise


@dataclass
class OfficialStep:
    """One official training set-up; :meth:`run_cycle` trains ``cycle`` minibatches (iterations)."""

    codebase: CodeBase
    label: str
    device: torch.device
    cycle: int
    reals_per_minibatch: int
    info: dict[str, Any] = field(default_factory=dict)
    batch_idx: int = 0

    @property
    def reals_per_cycle(self) -> int:
        return self.cycle * self.reals_per_minibatch

    def backends(self) -> None:
        """The backend flags the official code runs with (set before each of its repetitions, since the
        bench interleaves it with ours in one process)."""
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = bool(self.info.get("tf32_matmul", False))
        torch.backends.cudnn.allow_tf32 = bool(self.info.get("tf32_cudnn", False))

    def minibatch(self) -> int:
        raise NotImplementedError

    def run_cycle(self) -> int:
        self.backends()
        with self.codebase.active():
            return sum(self.minibatch() for _ in range(self.cycle))

    def warmup(self, minibatches: int) -> None:
        self.backends()
        with self.codebase.active():
            for _ in range(minibatches):
                self.minibatch()


# -- stylegan2-ada-pytorch ----------------------------------------------------------------------------
def _distutils_shim() -> bool:
    """``dnnlib/util.py`` imports ``distutils.util.strtobool``; Python 3.12 removed distutils (setuptools
    usually still provides it). Only where neither does, a module with that one function is registered.
    Returns whether it was needed."""
    import importlib.util

    if "distutils" in sys.modules or importlib.util.find_spec("distutils") is not None:
        return False
    package, util = types.ModuleType("distutils"), types.ModuleType("distutils.util")

    def strtobool(value: str) -> int:
        text = value.lower()
        if text in ("y", "yes", "t", "true", "on", "1"):
            return 1
        if text in ("n", "no", "f", "false", "off", "0"):
            return 0
        raise ValueError(f"invalid truth value {value!r}")

    util.strtobool = strtobool  # type: ignore[attr-defined]
    package.util = util  # type: ignore[attr-defined]
    sys.modules.update({"distutils": package, "distutils.util": util})
    return True


def _lazy(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, list[float]]:
    ratio = interval / (interval + 1)
    return lr * ratio, [b**ratio for b in betas]


class OfficialStyleGAN2(OfficialStep):
    """stylegan2-ada-pytorch's StyleGAN2Loss phases in the configuration of an ``ns_r1`` recipe."""

    def __init__(
        self,
        codebase: CodeBase,
        resolved: ResolvedRecipe,
        device: torch.device,
        *,
        fp16_res: int = 0,
        seed: int = 0,
    ) -> None:
        recipe, m = resolved.recipe, resolved.model
        if recipe.loss.kind != "ns_r1":
            raise DeganError(f"{codebase.name} trains StyleGAN2 (loss.kind ns_r1), not {recipe.loss.kind!r}")
        if fp16_res and device.type != "cuda":
            raise DeganError("the official fp16 layers run on CUDA only", fix="use fp16_res=0 on the CPU")
        tcfg, lcfg = recipe.training, recipe.loss
        batch = tcfg.batch
        self.batch_gpu = min(tcfg.batch_gpu or batch, batch)
        intervals = {"G": lcfg.pl_interval, "D": lcfg.r1_interval}
        super().__init__(
            codebase,
            f"{codebase.name} ({'fp32' if not fp16_res else f'fp16 in {fp16_res} res'})",
            device,
            cycle=int(np.lcm(*intervals.values())),
            reals_per_minibatch=batch,
        )
        torch.manual_seed(seed)
        shimmed = _distutils_shim()
        with codebase.active():
            networks = _import(codebase, "training.networks")
            loss_mod = _import(codebase, "training.loss")
            misc = _import(codebase, "torch_utils.misc")
            conv2d_gradfix = _import(codebase, "torch_utils.ops.conv2d_gradfix")
            grid_sample_gradfix = _import(codebase, "torch_utils.ops.grid_sample_gradfix")
            conv2d_gradfix.enabled = True  # as training_loop.py sets them
            grid_sample_gradfix.enabled = True
            common = dict(c_dim=m.c_dim, img_resolution=recipe.data.resolution, img_channels=3)
            G = networks.Generator(
                z_dim=m.z_dim,
                w_dim=m.w_dim,
                **common,
                mapping_kwargs=dict(
                    num_layers=m.mapping_layers, lr_multiplier=m.mapping_lr_mult, w_avg_beta=m.w_avg_beta
                ),
                synthesis_kwargs=dict(
                    channel_base=m.channel_base,
                    channel_max=m.channel_max,
                    num_fp16_res=fp16_res,
                    conv_clamp=m.conv_clamp,
                    architecture=m.g_architecture,
                ),
            )
            D = networks.Discriminator(
                **common,
                architecture=m.d_architecture,
                channel_base=m.channel_base,
                channel_max=m.channel_max,
                num_fp16_res=fp16_res,
                conv_clamp=m.conv_clamp,
                mapping_kwargs=dict(num_layers=m.d_cmap_layers, lr_multiplier=m.mapping_lr_mult),
                epilogue_kwargs=dict(
                    mbstd_group_size=m.mbstd_group or None, mbstd_num_channels=m.mbstd_channels
                ),
            )
            self.G = G.train().requires_grad_(False).to(device)
            self.D = D.train().requires_grad_(False).to(device)
            self.G_ema = copy.deepcopy(self.G).eval()
            self.loss = loss_mod.StyleGAN2Loss(
                device=device,
                G_mapping=self.G.mapping,
                G_synthesis=self.G.synthesis,
                D=self.D,
                augment_pipe=None,
                style_mixing_prob=lcfg.style_mixing_prob,
                r1_gamma=lcfg.r1_gamma,
                pl_batch_shrink=lcfg.pl_batch_shrink,
                pl_decay=lcfg.pl_decay,
                pl_weight=lcfg.pl_weight,
            )
            self._nan_to_num = misc.nan_to_num
        self.phases: list[tuple[str, torch.nn.Module, torch.optim.Optimizer, int]] = []
        for name, module, lr in (("G", self.G, tcfg.g_lr), ("D", self.D, tcfg.d_lr)):
            interval = intervals[name]
            if interval > 1:
                lazy_lr, betas = _lazy(lr, tuple(tcfg.betas), interval)
                opt = torch.optim.Adam(module.parameters(), lr=lazy_lr, betas=betas, eps=tcfg.eps)
                self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
            else:
                opt = torch.optim.Adam(module.parameters(), lr=lr, betas=list(tcfg.betas), eps=tcfg.eps)
                self.phases.append((name + "both", module, opt, 1))
        self.ema_nimg = tcfg.ema_kimg * 1000
        resolution = recipe.data.resolution
        generator = torch.Generator().manual_seed(seed)
        pool = torch.randint(
            0, 256, (max(2 * batch, 16), 3, resolution, resolution), dtype=torch.uint8, generator=generator
        )
        self._reals = pool.to(device)
        self.info = {
            "code": codebase.name,
            "path": str(codebase.root),
            "commit": codebase.commit(),
            "fp16_res": fp16_res,
            "batch_gpu": self.batch_gpu,
            "augment_pipe": None,
            "tf32_matmul": False,
            "tf32_cudnn": False,  # training_loop.py: allow_tf32=False
            "distutils_shim": shimmed,
            "custom_ops": self._custom_ops()
            if device.type == "cuda"
            else "not used on the CPU (reference ops)",
        }

    def _custom_ops(self) -> dict[str, bool]:
        """Builds (or loads) the fused CUDA ops the way the official code does on first use."""
        with self.codebase.active():
            ops = {
                name: _import(self.codebase, f"torch_utils.ops.{name}") for name in ("bias_act", "upfirdn2d")
            }
            return {name: bool(module._init()) for name, module in ops.items()}

    def minibatch(self) -> int:
        device, batch, batch_gpu = self.device, self.reals_per_minibatch, self.batch_gpu
        start = (self.batch_idx * batch) % (len(self._reals) - batch + 1)
        real_img = (self._reals[start : start + batch].to(torch.float32) / 127.5 - 1).split(batch_gpu)
        c_dim = self.G.c_dim
        real_c = torch.zeros(batch, c_dim, device=device).split(batch_gpu)
        gen_z = torch.randn(len(self.phases) * batch, self.G.z_dim, device=device).split(batch)
        gen_c = torch.zeros(len(self.phases) * batch, c_dim, device=device).split(batch)
        rounds = batch // batch_gpu
        for (name, module, opt, interval), z, c in zip(self.phases, gen_z, gen_c, strict=True):
            if self.batch_idx % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            for index, (img, img_c, zz, cc) in enumerate(
                zip(real_img, real_c, z.split(batch_gpu), c.split(batch_gpu), strict=True)
            ):
                self.loss.accumulate_gradients(
                    phase=name,
                    real_img=img,
                    real_c=img_c,
                    gen_z=zz,
                    gen_c=cc,
                    sync=index == rounds - 1,
                    gain=interval,
                )
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    self._nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
        beta = 0.5 ** (batch / max(self.ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)
        self.batch_idx += 1
        return batch


# -- DiffAugment-biggan-cifar ---------------------------------------------------------------------
#: recipe method -> the DiffAugment policy of the official script
_BIGGAN_POLICY = {"biggan": "", "diffaugment": None}  # None: the recipe's own policy


class OfficialBigGAN(OfficialStep):
    """DiffAugment-biggan-cifar's ``GAN_training_function`` in the configuration of a BigGAN recipe."""

    def __init__(
        self,
        codebase: CodeBase,
        resolved: ResolvedRecipe,
        device: torch.device,
        *,
        torch_default_tf32: bool = False,
        seed: int = 0,
    ) -> None:
        recipe, m = resolved.recipe, resolved.model
        if m.arch != "biggan" or recipe.loss.kind != "hinge" or getattr(m, "g_ch", None) is None:
            raise DeganError(f"{codebase.name} trains BigGAN-CIFAR, not {m.arch} / {recipe.loss.kind}")
        if getattr(m, "hier", False) or getattr(m, "g_attn_after", None):
            raise DeganError(
                f"{codebase.name} trains the BigGAN-PyTorch CIFAR model; this recipe is another "
                "BigGAN configuration (StudioGAN)",
                fix="compare a biggan-cifar.yaml recipe",
            )
        if resolved.method not in _BIGGAN_POLICY:
            raise DeganError(
                f"no official BigGAN step for method {resolved.method!r}",
                fix=f"compare one of {', '.join(_BIGGAN_POLICY)}",
            )
        policy = _BIGGAN_POLICY[resolved.method]
        if policy is None:
            policy = str(getattr(resolved.method_config, "policy", ""))
        tcfg, lcfg = recipe.training, recipe.loss
        super().__init__(
            codebase,
            f"{codebase.name} ({'torch default TF32' if torch_default_tf32 else 'fp32'})",
            device,
            cycle=1,
            reals_per_minibatch=tcfg.batch * lcfg.d_steps,
        )
        dataset = {10: "C10", 100: "C100"}.get(int(m.c_dim))
        if dataset is None:
            raise DeganError(f"{codebase.name} knows CIFAR-10/100 (10 or 100 classes), not c_dim={m.c_dim}")
        args = [
            "--dataset",
            dataset,
            "--batch_size",
            str(tcfg.batch),
            "--num_D_steps",
            str(lcfg.d_steps),
            "--G_lr",
            str(tcfg.g_lr),
            "--D_lr",
            str(tcfg.d_lr),
            "--G_ch",
            str(m.g_ch),
            "--D_ch",
            str(m.d_ch),
            "--dim_z",
            str(m.z_dim),
            "--G_attn",
            "0",
            "--D_attn",
            "0",
            "--G_init",
            "N02",
            "--D_init",
            "N02",
            "--G_ortho",
            "0.0",
            "--ema",
            "--use_ema",
            "--ema_start",
            str(tcfg.ema_start_step),
            "--ema_decay",
            str(tcfg.ema_decay),
            "--num_G_accumulations",
            "1",
            "--num_D_accumulations",
            "1",
            "--DiffAugment",
            policy,
            "--seed",
            str(seed),
        ]
        torch.manual_seed(seed)
        with codebase.active():
            utils = _import(codebase, "utils")
            train_fns = _import(codebase, "train_fns")
            model = _import(codebase, "BigGAN")
            config = vars(utils.prepare_parser().parse_args(args))
            config["resolution"] = utils.imsize_dict[dataset]
            config["n_classes"] = utils.nclass_dict[dataset]
            config["G_activation"] = utils.activation_dict[config["G_nl"]]
            config["D_activation"] = utils.activation_dict[config["D_nl"]]
            with contextlib.redirect_stdout(None):  # its constructors print
                self.G = model.Generator(**config).to(device)
                self.D = model.Discriminator(**config).to(device)
                G_ema = model.Generator(**{**config, "skip_init": True, "no_optim": True}).to(device)
                self.ema = utils.ema(self.G, G_ema, config["ema_decay"], config["ema_start"])
            GD = model.G_D(self.G, self.D)  # one device: train.py's --parallel DataParallel is left out
            g_batch = max(config["G_batch_size"], config["batch_size"])
            z_, y_ = utils.prepare_z_y(g_batch, self.G.dim_z, config["n_classes"], device=device)
            self.state = {
                "itr": 0,
                "epoch": 0,
                "save_num": 0,
                "save_best_num": 0,
                "best_IS": 0,
                "best_FID": 999999,
                "config": config,
            }
            self.train = train_fns.GAN_training_function(
                self.G, self.D, GD, z_, y_, self.ema, self.state, config
            )
            self.G_ema = G_ema
        generator = torch.Generator().manual_seed(seed)
        n = self.reals_per_minibatch
        self._x = (torch.rand(n, 3, 32, 32, generator=generator) * 2 - 1).to(device)
        self._y = torch.randint(0, config["n_classes"], (n,), generator=generator).to(device)
        self.info = {
            "code": codebase.name,
            "path": str(codebase.root),
            "commit": codebase.commit(),
            "policy": policy,
            "parallel": False,
            # train.py leaves torch's defaults: cuDNN convolutions in TF32 on Ampere and newer GPUs
            "tf32_matmul": False,
            "tf32_cudnn": bool(torch_default_tf32),
        }

    def minibatch(self) -> int:
        self.state["itr"] += 1
        self.G.train()
        self.D.train()
        self.G_ema.train()
        self.train(self._x, self._y)
        self.batch_idx += 1
        return self.reals_per_minibatch
