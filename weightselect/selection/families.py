"""Model families: how parameter names map to layers and to named axes (component mapping).

Each family declares, in one place, its layer naming and, for each parameter-name pattern, the axis
of every tensor dimension. An axis is a name (``embed``, ``blocks.3.mlp_hidden``,
``stages.2.channels``); ``Fused(axis, n)`` is a dimension made of ``n`` consecutive blocks of one
axis (ViT's ``qkv`` = q, k and v, each of the attention width); ``None`` is a dimension that is
never selected (kernel size, input channels, class count) and must match between teacher and
student. Rules are patterns over the *student* name; ``{L}`` stands for the layer prefix and axis
templates are formatted with the pattern's groups plus ``prev`` (stage - 1) and ``last`` (last stage).

Parameters no rule covers get axes inferred from shapes (one axis per teacher/student size pair),
which is also all the generic fallback family does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "Fused",
    "Family",
    "FAMILIES",
    "GENERIC",
    "detect_family",
    "family_by_name",
    "infer_dims",
    "infer_layer_pattern",
    "fused_dims",
    "fused_layout_known",
    "packed_roles",
    "grouped_conv",
    "PACKED_ROLES",
    "FUSED_LAYOUTS",
    "growing_inputs",
]


@dataclass(frozen=True)
class Fused:
    """A dimension made of ``blocks`` consecutive copies of ``axis`` (selected block by block)."""

    axis: str
    blocks: int


Dim = Union[str, Fused, None]
Dims = Tuple[Dim, ...]
DimsRule = Union[Dims, Callable[[Dict[str, object]], Dims]]


@dataclass
class Family:
    """What weight selection knows about one model family: how to recognise it, where its layers
    are, the axes of each parameter, its components (for ablations) and its embedding axes."""

    name: str
    signature: Tuple[str, ...]  # parameter names (regexes) present in every model of the family
    layer_pattern: Optional[str]  # regex with groups 'group' and 'index', matched at a name's start
    rules: Sequence[Tuple[str, DimsRule]]
    components: Mapping[str, str] = field(default_factory=dict)  # component -> regex (Table 10)
    embedding_axes: str = r".*"  # regex of the axes that L1 pruning prunes (the embedding width)
    stage_pattern: Optional[str] = None  # regex whose group 1 is a stage index (for {last})
    pin_first: bool = False  # the first layer of a group differs (ResNet downsampling block)
    # name regex -> fn(teacher tensor, student shape, student module owning it) giving the teacher
    # tensor resampled to the student's size on its unselected dimensions (patch kernels, relative
    # position bias tables for another window size)
    resamplers: Mapping[str, Callable] = field(default_factory=dict)
    # fn(shapes) -> bool: the names match, but do the shapes fit the family? (e.g. a ViT's residual
    # width is the same in every block; Hiera's is not)
    fits: Optional[Callable[[Mapping[str, Tuple[int, ...]]], bool]] = None

    def __post_init__(self):
        layer = self.layer_pattern or r"(?!)"
        # the layer prefix inside rules: {L} -> the whole 'group.index' prefix
        inner = re.sub(r"\(\?P<(group|index)>", "(?:", layer.lstrip("^"))
        inner = inner[:-2] if inner.endswith(r"\.") else inner
        self._rules = [
            (re.compile(pat.replace("{L}", f"(?P<L>{inner})") + r"\Z"), dims) for pat, dims in self.rules
        ]
        self._layer_re = re.compile(self.layer_pattern) if self.layer_pattern else None
        self._stage_re = re.compile(self.stage_pattern) if self.stage_pattern else None
        self._components = {k: re.compile(v) for k, v in self.components.items()}
        self._embedding = re.compile(self.embedding_axes + r"\Z")
        self._resamplers = [(re.compile(k + r"\Z"), fn) for k, fn in self.resamplers.items()]

    @property
    def layer_re(self) -> Optional["re.Pattern[str]"]:
        return self._layer_re

    def matches(self, keys: Iterable[str]) -> bool:
        """Whether the signature names are all present (and, given shapes, the shapes fit)."""
        shapes = keys if isinstance(keys, Mapping) else None
        keys = list(keys)
        if not all(any(re.fullmatch(sig, k) for k in keys) for sig in self.signature):
            return False
        return shapes is None or self.fits is None or self.fits(shapes)

    def context(self, keys: Iterable[str]) -> Dict[str, object]:
        ctx: Dict[str, object] = {}
        if self._stage_re is not None:
            stages = [int(m.group(1)) for m in map(self._stage_re.match, keys) if m]
            if stages:
                ctx["last"] = max(stages)
        return ctx

    def dims(self, key: str, ctx: Mapping[str, object]) -> Optional[Dims]:
        """The axes of ``key``'s dimensions, or None when no rule covers it."""
        for pattern, rule in self._rules:
            m = pattern.match(key)
            if not m:
                continue
            env: Dict[str, object] = dict(ctx)
            env.update({k: v for k, v in m.groupdict().items() if v is not None})
            if "s" in env:
                env["prev"] = int(env["s"]) - 1
            env["keys"] = ctx.get("keys", ())
            dims = rule(env) if callable(rule) else rule
            return tuple(_format_dim(d, env) for d in dims)
        return None

    def resampler(self, key: str) -> Optional[Callable]:
        for rx, fn in self._resamplers:
            if rx.match(key):
                return fn
        return None

    def component_of(self, key: str) -> List[str]:
        return [name for name, rx in self._components.items() if rx.search(key)]

    def is_embedding_axis(self, axis: str) -> bool:
        return bool(self._embedding.match(axis))


def _format_dim(dim: Dim, env: Mapping[str, object]) -> Dim:
    if dim is None:
        return None
    if isinstance(dim, Fused):
        return Fused(dim.axis.format(**env), dim.blocks)
    return dim.format(**env)


def _fc1(env) -> Dims:
    """``mlp.fc1``: a gated MLP (timm ``GluMlp``, EVA02's SwiGLU) fuses value and gate, so its rows
    are two blocks of the hidden axis (read from the student's shapes: fc1 has twice fc2's inputs)."""
    L, shapes = env["L"], env.get("shapes", {})
    fc1, fc2 = shapes.get(f"{L}.mlp.fc1.weight"), shapes.get(f"{L}.mlp.fc2.weight")
    hidden = "{L}.mlp_hidden"
    if fc1 is not None and fc2 is not None and len(fc2) > 1 and fc1[0] == 2 * fc2[1]:
        hidden = Fused(hidden, 2)
    return (hidden, env["width"]) if env["param"] == "weight" else (hidden,)


def _transformer_block(layer: str, width: str) -> List[Tuple[str, DimsRule]]:
    """Rules of a pre-norm transformer block (timm ``Block`` and its relatives in BEiT, EVA, CaiT,
    DeiT3, Swin): ``layer`` is the layer regex (with group ``L``), ``width`` the residual axis.
    Attention and MLP hidden widths are per-layer axes; q, k and v are three blocks of the attention
    axis; layer scales (``ls1.gamma``, ``gamma_1``) and BEiT/EVA's ``q_bias``/``v_bias`` carry the
    axis of the tensor they scale or shift."""
    return [
        (layer + r"\.norm[12]\.(weight|bias)", (width,)),
        (layer + r"\.ls[12]\.gamma", (width,)),
        (layer + r"\.gamma_[12]", (width,)),
        (layer + r"\.attn\.qkv\.weight", (Fused("{L}.attn", 3), width)),
        (layer + r"\.attn\.qkv\.bias", (Fused("{L}.attn", 3),)),
        (layer + r"\.attn\.[qv]_bias", ("{L}.attn",)),
        (layer + r"\.attn\.([qkv]|[qkv]_proj)\.weight", ("{L}.attn", width)),  # CaiT class attention, EVA
        (layer + r"\.attn\.([qkv]|[qkv]_proj)\.bias", ("{L}.attn",)),
        (layer + r"\.attn\.[qk]_norm\.(weight|bias)", (None,)),  # per head_dim, which is fixed
        (layer + r"\.attn\.norm\.(weight|bias)", ("{L}.attn",)),
        (layer + r"\.attn\.proj\.weight", (width, "{L}.attn")),
        (layer + r"\.attn\.proj\.bias", (width,)),
        (layer + r"\.attn\.relative_position_bias_table", (None, "{L}.heads")),  # BEiT (tokens, heads)
        (layer + r"\.attn\.proj_[lw]\.weight", ("{L}.heads", "{L}.heads")),  # CaiT talking heads
        (layer + r"\.attn\.proj_[lw]\.bias", ("{L}.heads",)),
        (layer + r"\.mlp\.fc1\.(?P<param>weight|bias)", lambda env: _fc1({**env, "width": width})),
        (layer + r"\.mlp\.fc1_[gx]\.weight", ("{L}.mlp_hidden", width)),  # SwiGLU, separate value/gate
        (layer + r"\.mlp\.fc1_[gx]\.bias", ("{L}.mlp_hidden",)),
        (layer + r"\.mlp\.norm\.(weight|bias)", ("{L}.mlp_hidden",)),
        (layer + r"\.mlp\.fc2\.weight", (width, "{L}.mlp_hidden")),
        (layer + r"\.mlp\.fc2\.bias", (width,)),
    ]


def _resample_patch_kernel(tensor, student_shape, owner=None):
    """Patch-embedding kernels resampled to the student's patch size (timm's
    ``resample_patch_embed``, as FlexiViT)."""
    from timm.layers import resample_patch_embed

    if tensor.shape[1] != student_shape[1]:
        raise ValueError(
            f"the teacher's patch embedding takes {tensor.shape[1]} input channels, the student's {student_shape[1]}"
        )
    return resample_patch_embed(tensor, list(student_shape[2:]))


def _isotropic(shapes: Mapping[str, Tuple[int, ...]]) -> bool:
    """Every block's residual width is the patch embedding's (a ViT, not a hierarchical Hiera)."""
    width = shapes.get("patch_embed.proj.weight", (None,))[0]
    norms = [v[0] for k, v in shapes.items() if re.fullmatch(r"blocks\.\d+\.norm1\.weight", k)]
    return all(n == width for n in norms)


# --------------------------------------------------------------------------------------------
# timm VisionTransformer (ViT, DeiT; isotropic)
E = "embed"
VIT = Family(
    name="vit",
    signature=(r"patch_embed\.proj\.weight", r"blocks\.0\.attn\.qkv\.weight"),
    layer_pattern=r"^(?P<group>blocks|blocks_token_only)\.(?P<index>\d+)\.",
    rules=[
        (r"(cls_token|reg_token|dist_token)", (None, None, E)),
        (r"pos_embed", lambda env: (None,) * (len(env["shapes"].get("pos_embed", (0, 0, 0))) - 1) + (E,)),
        (r"patch_embed\.proj\.weight", (E, None, None, None)),
        (r"patch_embed\.proj\.bias", (E,)),
        (r"(norm_pre|norm|fc_norm|patch_embed\.norm)\.(weight|bias)", (E,)),
        *_transformer_block("{L}", E),
        # global_pool='map': timm's AttentionPoolLatent (kv: reshape(B, N, 2, heads, head_dim), [k | v])
        (r"attn_pool\.latent", (None, None, E)),
        (r"attn_pool\.q\.weight", ("attn_pool.attn", E)),
        (r"attn_pool\.q\.bias", ("attn_pool.attn",)),
        (r"attn_pool\.kv\.weight", (Fused("attn_pool.attn", 2), E)),
        (r"attn_pool\.kv\.bias", (Fused("attn_pool.attn", 2),)),
        (r"attn_pool\.[qk]_norm\.(weight|bias)", (None,)),
        (r"attn_pool\.proj\.weight", (E, "attn_pool.attn")),
        (r"attn_pool\.proj\.bias", (E,)),
        (r"attn_pool\.norm\.(weight|bias)", (E,)),
        (r"attn_pool\.mlp\.fc1\.weight", ("attn_pool.mlp_hidden", E)),
        (r"attn_pool\.mlp\.fc1\.bias", ("attn_pool.mlp_hidden",)),
        (r"attn_pool\.mlp\.fc2\.weight", (E, "attn_pool.mlp_hidden")),
        (r"attn_pool\.mlp\.fc2\.bias", (E,)),
        (r"(head|head_dist)\.weight", (None, E)),
        (r"(head|head_dist)\.bias", (None,)),
    ],
    components={
        "patch_embed": r"^patch_embed\.",
        "pos_embed": r"^pos_embed$",
        "cls_token": r"^(cls_token|reg_token|dist_token)$",
        "attention": r"\.attn\.",
        "norm": r"(^|\.)(norm\d?|fc_norm|norm_pre|[qk]_norm)\.",
        "mlp": r"\.mlp\.",
        "layer_scale": r"(\.ls\d\.|\.gamma_\d$)",
    },
    embedding_axes=E,
    fits=_isotropic,
    # pos_embed is resampled from the models' token layouts (``tokens``), not from its shape alone
    resamplers={r"patch_embed\.proj\.weight": _resample_patch_kernel},
)

def _plain_convnext(shapes: Mapping[str, Tuple[int, ...]]) -> bool:
    """ConvNeXt blocks only: EdgeNeXt shares its stem, stage and conv_dw names but adds split
    depthwise convolutions (``convs``), cross-covariance attention (``xca``) and ``pos_embd``."""
    return not any(re.search(r"\.(convs|xca)\.|pos_embd", k) for k in shapes)


# --------------------------------------------------------------------------------------------
# timm ConvNeXt (V1/V2; hierarchical). femto/atto/nano build the MLP from 1x1 convolutions
# (weights (out, in, 1, 1)), larger ones from linear layers (out, in): same axes, other shape.
CH = "stages.{s}.channels"
CL = r"(?P<L>stages\.(?P<s>\d+)\.blocks\.\d+)"
CONVNEXT = Family(
    name="convnext",
    signature=(r"stem\.0\.weight", r"stages\.0\.blocks\.0\.conv_dw\.weight"),
    layer_pattern=r"^(?P<group>stages\.\d+\.blocks)\.(?P<index>\d+)\.",
    stage_pattern=r"^stages\.(\d+)\.",
    rules=[
        (r"stem\.0\.weight", ("stages.0.channels", None, None, None)),
        (r"stem\.[01]\.bias|stem\.1\.weight", ("stages.0.channels",)),
        (r"stages\.(?P<s>\d+)\.downsample\.0\.(weight|bias)", ("stages.{prev}.channels",)),
        (r"stages\.(?P<s>\d+)\.downsample\.1\.weight", (CH, "stages.{prev}.channels", None, None)),
        (r"stages\.(?P<s>\d+)\.downsample\.1\.bias", (CH,)),
        (CL + r"\.conv_dw\.weight", (CH, None, None, None)),
        (CL + r"\.(conv_dw\.bias|norm\.weight|norm\.bias|gamma)", (CH,)),
        (CL + r"\.mlp\.fc1\.weight", ("{L}.mlp_hidden", CH)),
        (CL + r"\.mlp\.(fc1\.bias|grn\.weight|grn\.bias)", ("{L}.mlp_hidden",)),
        (CL + r"\.mlp\.fc2\.weight", (CH, "{L}.mlp_hidden")),
        (CL + r"\.mlp\.fc2\.bias", (CH,)),
        (r"(norm_pre|head\.norm)\.(weight|bias)", ("stages.{last}.channels",)),
        (r"head\.fc\.weight", (None, "stages.{last}.channels")),
        (r"head\.fc\.bias", (None,)),
    ],
    components={
        "stem": r"^stem\.",
        "downsample": r"\.downsample\.",
        "conv_dw": r"\.conv_dw\.",
        "norm": r"(\.norm\.|^stem\.1\.|\.downsample\.0\.)",
        "mlp": r"\.mlp\.",
        "layer_scale": r"\.gamma$",
    },
    embedding_axes=r"stages\.\d+\.channels",
    fits=_plain_convnext,
)

# --------------------------------------------------------------------------------------------
def _resize_rel_pos_bias(tensor, student_shape, owner=None):
    """A relative position bias table ``(tokens, heads)`` for the student's window size, as timm's
    Swin ``checkpoint_filter_fn`` does on load (``resize_rel_pos_bias_table``); heads are kept and
    selected afterwards."""
    from timm.layers import resize_rel_pos_bias_table

    window = getattr(owner, "window_size", None)
    if window is None:
        raise ValueError(
            f"the relative position bias table has {tensor.shape[0]} entries in the teacher and {student_shape[0]} "
            "in the student: the window sizes differ; build the student with the teacher's window_size"
        )
    return resize_rel_pos_bias_table(tensor, new_window_size=tuple(window), new_bias_shape=(student_shape[0], tensor.shape[1]))


# --------------------------------------------------------------------------------------------
# timm Swin Transformer (v1; hierarchical). Patch merging concatenates 4 neighbours: Fused(., 4).
SCH = "layers.{s}.channels"
SL = r"(?P<L>layers\.(?P<s>\d+)\.blocks\.\d+)"
SWIN = Family(
    name="swin",
    signature=(r"patch_embed\.proj\.weight", r"layers\.0\.blocks\.0\.attn\.relative_position_bias_table"),
    layer_pattern=r"^(?P<group>layers\.\d+\.blocks)\.(?P<index>\d+)\.",
    stage_pattern=r"^layers\.(\d+)\.",
    rules=[
        (r"patch_embed\.proj\.weight", ("layers.0.channels", None, None, None)),
        (r"patch_embed\.(proj\.bias|norm\.weight|norm\.bias)", ("layers.0.channels",)),
        (r"layers\.(?P<s>\d+)\.downsample\.norm\.(weight|bias)", (Fused("layers.{prev}.channels", 4),)),
        (r"layers\.(?P<s>\d+)\.downsample\.reduction\.weight", (SCH, Fused("layers.{prev}.channels", 4))),
        (SL + r"\.attn\.relative_position_bias_table", (None, "layers.{s}.heads")),
        *_transformer_block(SL, SCH),
        (r"norm\.(weight|bias)", ("layers.{last}.channels",)),
        (r"head\.fc\.weight", (None, "layers.{last}.channels")),
        (r"head\.fc\.bias", (None,)),
    ],
    components={
        "patch_embed": r"^patch_embed\.",
        "downsample": r"\.downsample\.",
        "attention": r"\.attn\.",
        "norm": r"(^|\.)norm\d?\.",
        "mlp": r"\.mlp\.",
    },
    embedding_axes=r"layers\.\d+\.channels",
    resamplers={
        r"layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table": _resize_rel_pos_bias,
        r"patch_embed\.proj\.weight": _resample_patch_kernel,
    },
)


# --------------------------------------------------------------------------------------------
# timm ResNet (basic and bottleneck blocks; hierarchical). The first block of a stage holds the
# downsampling shortcut, so layer selection always maps block 0 to block 0 (pin_first).
def _resnet_in(env) -> str:
    s, b = int(env["s"]), int(env["b"])
    if b > 0:
        return f"layer{s}.channels"
    return "stem.channels" if s == 1 else f"layer{s - 1}.channels"


def _resnet_conv(env) -> Dims:
    L, s, conv = env["L"], env["s"], env["conv"]
    bottleneck = f"{L}.conv3.weight" in env["keys"]
    out_axis = {
        "1": f"{L}.width1",
        "2": f"{L}.width2" if bottleneck else f"layer{s}.channels",
        "3": f"layer{s}.channels",
    }[conv]
    in_axis = {"1": _resnet_in(env), "2": f"{L}.width1", "3": f"{L}.width2"}[conv]
    shapes = env.get("shapes") or {}
    conv1, conv2 = shapes.get(f"{L}.conv1.weight"), shapes.get(f"{L}.conv2.weight")
    if conv == "2" and conv1 and conv2 and conv2[1] != conv1[0]:  # ResNeXt: grouped, in_channels / groups
        in_axis = None
    return (out_axis, in_axis, None, None)


def _resnet_bn(env) -> Dims:
    return (_resnet_conv({**env, "conv": env["bn"]})[0],)


RL = r"(?P<L>layer(?P<s>\d+)\.(?P<b>\d+))"
BN = r"(weight|bias|running_mean|running_var)"
RESNET = Family(
    name="resnet",
    signature=(r"conv1\.weight", r"layer1\.0\.conv1\.weight"),
    layer_pattern=r"^(?P<group>layer\d+)\.(?P<index>\d+)\.",
    stage_pattern=r"^layer(\d+)\.",
    pin_first=True,
    rules=[
        (r"conv1\.weight", ("stem.channels", None, None, None)),
        (r"bn1\." + BN, ("stem.channels",)),
        (r"bn1\.num_batches_tracked|" + RL + r"\..*num_batches_tracked", ()),
        (RL + r"\.conv(?P<conv>[123])\.weight", _resnet_conv),
        (RL + r"\.bn(?P<bn>[123])\." + BN, _resnet_bn),
        (RL + r"\.downsample\.0\.weight", lambda env: ("layer{s}.channels", _resnet_in(env), None, None)),
        (RL + r"\.downsample\.1\." + BN, ("layer{s}.channels",)),
        (r"fc\.weight", (None, "layer{last}.channels")),
        (r"fc\.bias", (None,)),
    ],
    components={
        "stem": r"^(conv1|bn1)\.",
        "downsample": r"\.downsample\.",
        "norm": r"(^|\.)bn\d\.|\.downsample\.1\.",
        "conv": r"\.conv\d\.",
    },
    embedding_axes=r"(stem|layer\d+)\.channels",
)

# --------------------------------------------------------------------------------------------
# Anything else: layers found from repeated name patterns, axes from shapes.
GENERIC = Family(name="generic", signature=(), layer_pattern=None, rules=[])

FAMILIES: Tuple[Family, ...] = (VIT, CONVNEXT, SWIN, RESNET)


def detect_family(keys: Iterable[str]) -> Family:
    """The first family whose signature names are all present (and, when ``keys`` is a mapping of
    names to shapes, whose shape check passes), else the generic fallback."""
    keys = keys if isinstance(keys, Mapping) else list(keys)
    for fam in FAMILIES:
        if fam.matches(keys):
            return fam
    return GENERIC


def family_by_name(name: str) -> Family:
    for fam in FAMILIES + (GENERIC,):
        if fam.name == name:
            return fam
    raise ValueError(f"unknown family '{name}'; known: {', '.join(f.name for f in FAMILIES + (GENERIC,))}")


# Fused projections outside timm's ViT family: name suffix -> (fused dimension, blocks).
# nn.MultiheadAttention packs q, k, v in in_proj_*; GPT-2's Conv1D c_attn is (in, 3 * out);
# GPT-NeoX/Falcon/MPT/BLOOM name theirs query_key_value / Wqkv; kv (PVT, Twins) packs k and v.
FUSED_SUFFIXES: Tuple[Tuple[str, int, int], ...] = (
    ("in_proj_weight", 0, 3),
    ("in_proj_bias", 0, 3),
    ("c_attn.weight", 1, 3),
    ("c_attn.bias", 0, 3),
    ("qkv.weight", 0, 3),
    ("qkv.bias", 0, 3),
    ("query_key_value.weight", 0, 3),
    ("query_key_value.bias", 0, 3),
    ("Wqkv.weight", 0, 3),
    ("Wqkv.bias", 0, 3),
    ("kv.weight", 0, 2),
    ("kv.bias", 0, 2),
)


# The modules whose fused projection (the suffixes above) is [q | k | v] (or [k | v]) blocks, each
# block heads x head_dim, read from their forward code (timm 1.0): qkv(x).reshape(B, N, 3, heads,
# head_dim) and the like. A value is a function of the module telling whether it is laid out so
# (MaxViT's attention chooses by its head_first attribute: [head][q, k, v][head_dim] when True).
# Modules not here (LeViT, TinyViT, EfficientFormer: [head][q, k, v] with other sizes) are refused
# when the fused dimension changes: declare a module here once its layout is read from its forward.
_BLOCKS = lambda module: True  # noqa: E731
FUSED_LAYOUTS: Dict[str, Callable[[object], bool]] = {
    **{f"timm.{name}": _BLOCKS for name in (
        "layers.attention.Attention", "layers.attention.AttentionRope", "layers.attention_pool.AttentionPoolLatent",
        "layers.attention_pool2d.AttentionPool2d", "layers.attention_pool2d.RotAttentionPool2d",
        "models.beit.Attention", "models.cait.TalkingHeadAttn", "models.coat.FactorAttnConvRelPosEnc",
        "models.convit.MHSA", "models.davit.ChannelAttention", "models.davit.WindowAttention",
        "models.edgenext.CrossCovarianceAttn", "models.eva.EvaAttention", "models.fastvit.Attention",
        "models.gcvit.WindowAttentionGlobal", "models.hiera.MaskUnitAttention",
        "models.hieradet_sam2.MultiScaleAttention", "models.metaformer.Attention",
        "models.mvitv2.MultiScaleAttention", "models.nest.Attention", "models.pvt_v2.Attention",
        "models.swin_transformer.WindowAttention", "models.swin_transformer_v2.WindowAttention",
        "models.swin_transformer_v2_cr.WindowMultiHeadAttention", "models.twins.GlobalSubSampleAttn",
        "models.twins.LocallyGroupedAttn", "models.visformer.Attention",
        "models.vision_transformer_relpos.RelPosAttention", "models.vision_transformer_sam.Attention",
        "models.volo.Attention", "models.volo.ClassAttention", "models.xcit.XCA",
    )},
    **{f"timm.{name}": (lambda module: not getattr(module, "head_first", True)) for name in (
        "layers.attention2d.Attention2d", "models.maxxvit.Attention2d", "models.maxxvit.AttentionCl")},
    "torch.nn.modules.activation.MultiheadAttention": _BLOCKS,
}


# Modules whose child projection packs several roles with sizes of their own, split in their forward
# (LeViT/TinyViT/EfficientFormer: per head [q, k, v] with key_dim != head value size; FocalNet's f:
# q, context and gates; MambaOut's fc1: g, i, c; an LSTM's four gates). Shape inference would take
# the whole dimension as one axis and mix the roles: a change of that dimension is refused.
# "" stands for the module's own parameters.
PACKED_ROLES: Dict[str, Tuple[str, ...]] = {
    "timm.models.levit.Attention": ("qkv",),
    "timm.models.levit.AttentionDownsample": ("kv",),
    "timm.models.tiny_vit.Attention": ("qkv",),
    "timm.models.efficientformer.Attention": ("qkv",),
    "timm.models.shvit.SHSA": ("qkv",),
    "timm.models.efficientvit_mit.LiteMLA": ("qkv",),
    "timm.models.focalnet.FocalModulation": ("f",),
    "timm.models.mambaout.GatedConvBlock": ("fc1",),
    "timm.models.csatv2.SpatialTransformerBlock": ("qkv",),
    "timm.models.edgenext.SplitTransposeBlock": ("convs",),  # depthwise convs over chunks of the channels
    "timm.layers.bottleneck_attn.BottleneckAttn": ("qkv",),
    "timm.layers.halo_attn.HaloAttn": ("kv",),
    "timm.layers.lambda_layer.LambdaLayer": ("qkv",),
    "timm.layers.diff_attention.DiffAttention": ("qkv",),
    "torch.nn.modules.rnn.LSTM": ("",),
    "torch.nn.modules.rnn.GRU": ("",),
}


def _owners(model: object, key: str, levels: int) -> Iterator[Tuple[object, str]]:
    """The modules of ``model`` above the parameter ``key`` (its own module first, then up to
    ``levels`` - 1 parents), each with the path from it down to the parameter's module."""
    parts = key.split(".")[:-1]
    for up in range(levels):
        if model is None or up > len(parts):
            return
        try:
            module = model.get_submodule(".".join(parts[:len(parts) - up]))
        except AttributeError:
            continue
        yield module, ".".join(parts[len(parts) - up:])


def _qualname(module: object) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def packed_roles(model: object, key: str) -> Optional[str]:
    """The class (and child) of a module in PACKED_ROLES whose packed projection holds ``key``,
    else None."""
    for module, child in _owners(model, key, 3):
        roles = PACKED_ROLES.get(_qualname(module), ())
        if child in roles or (child and child.split(".")[0] in roles):
            return _qualname(module) + (f".{child}" if child else "")
    return None


def grouped_conv(model: object, key: str) -> Optional[str]:
    """The name and groups of the grouped convolution owning ``key`` (1 < groups, and not depthwise
    with one output per input channel), else None: its channels are split into groups, each output
    reading only its own group's inputs; a depthwise convolution with a channel multiplier (FastViT's
    patch embedding: 2 outputs per input channel) is one of them."""
    for module, child in _owners(model, key, 1):
        groups = getattr(module, "groups", 1)
        if not (isinstance(groups, int) and groups > 1) or getattr(module, "in_channels", None) is None:
            continue
        if module.in_channels == groups and module.out_channels != groups:
            return f"{type(module).__name__} with {groups} groups, {module.out_channels // groups} outputs per input channel"
        if module.in_channels != groups:
            return f"{type(module).__name__} with {groups} groups"
    return None


def fused_layout_known(model: object, key: str) -> Tuple[bool, str]:
    """Whether the module that splits the fused tensor ``key`` (the parameter's module, or its
    parent: ``attn`` of ``attn.qkv.weight``) is declared in FUSED_LAYOUTS with [q | k | v] blocks;
    and that module's class name, for messages."""
    name = "unknown"
    for module, _ in _owners(model, key, 2):
        name = _qualname(module)
        if name in FUSED_LAYOUTS:
            return bool(FUSED_LAYOUTS[name](module)), name
    return False, name


def fused_dims(key: str, t_shape: Sequence[int], s_shape: Sequence[int], model: object = None) -> Optional[Dims]:
    """Axes of a fused projection known by name (``FUSED_SUFFIXES``), for families without a rule:
    the fused dimension is ``blocks`` copies of one axis, selected block by block, and the axis is
    named by its per-block sizes so that it is shared with the other tensors of that width
    (``out_proj``, the residual stream). None when ``key`` is not such a tensor. Raises
    ``ValueError`` naming the tensor when its fused dimension is not ``blocks`` equal blocks, or when
    it changes and the student ``model``'s module that splits it is not declared to split it into
    blocks (FUSED_LAYOUTS): its layout is then not guessed from the name."""
    leaf = key.rsplit(".", 2)
    for suffix, dim, blocks in FUSED_SUFFIXES:
        if not (key == suffix or key.endswith("." + suffix)) or dim >= len(t_shape):
            continue
        t, s = t_shape[dim], s_shape[dim]
        if t == s:
            return infer_dims(t_shape, s_shape)  # nothing selected on it
        if t % blocks or s % blocks:
            raise ValueError(
                f"'{key}' looks like a fused projection of {blocks} blocks, but its dimension {dim} ({t} -> {s}) "
                f"is not {blocks} equal blocks; exclude it (--exclude {'.'.join(leaf[:-1]) or key})"
            )
        known, owner = fused_layout_known(model, key)
        if not known:
            raise ValueError(
                f"'{key}' fuses {blocks} projections whose layout in {owner} is not declared as {blocks} blocks "
                f"(it may interleave them per head), and its width changes ({t} -> {s}): keep the attention "
                "width (heads x head size) equal, or declare the module in FUSED_LAYOUTS "
                "(weightselect/selection/families.py) after reading its forward"
            )
        dims = list(infer_dims(t_shape, s_shape))
        t, s = t // blocks, s // blocks
        dims[dim] = None if t == s else Fused(f"size{t}->{s}", blocks)
        return tuple(dims)
    return None


def growing_inputs(shapes: Mapping[str, Tuple[int, ...]]) -> Optional[str]:
    """The first set of sibling layers (``P<n>.rest`` for n = 1, 2, 3...) whose 1-D parameters grow by
    the same step from one sibling to the next (DenseNet's concatenated inputs), as ``P*``; None if none."""
    series: Dict[Tuple[str, str], Dict[int, int]] = {}
    for key, shape in shapes.items():
        if len(shape) != 1:
            continue
        for m in re.finditer(r"(?<=[A-Za-z_])(\d+)\.", key):
            series.setdefault((key[: m.start()], key[m.end():]), {})[int(m.group(1))] = shape[0]
    for (prefix, rest), sizes in series.items():
        values = [sizes[i] for i in sorted(sizes)]
        steps = {b - a for a, b in zip(values, values[1:])}
        if len(values) >= 3 and len(steps) == 1 and steps.pop() > 0:
            return f"{prefix}*"
    return None


def infer_dims(t_shape: Sequence[int], s_shape: Sequence[int]) -> Dims:
    """Axes from shapes only: equal sizes are kept whole, each (teacher, student) size pair is one
    axis shared by every tensor with that pair."""
    return tuple(None if t == s else f"size{t}->{s}" for t, s in zip(t_shape, s_shape))


def infer_layer_pattern(keys: Iterable[str]) -> Optional[str]:
    """A layer pattern for an unknown family: containers ``P.<i>.`` whose numbered children share
    the same parameter names (repeated layers)."""
    children: Dict[str, Dict[int, set]] = {}
    for key in keys:
        for m in re.finditer(r"\.(\d+)\.", "." + key):
            prefix = key[: m.start() - 1] if m.start() > 0 else ""
            if not prefix:
                continue
            rest = key[m.end() - 1:]
            children.setdefault(prefix, {}).setdefault(int(m.group(1)), set()).add(rest)
    groups = []
    for prefix, items in children.items():
        if len(items) < 2 or sorted(items) != list(range(len(items))):
            continue
        later = [frozenset(v) for i, v in sorted(items.items()) if i > 0]
        if len(set(later)) == 1 and later[0] <= items[0]:
            groups.append(prefix)
    # keep the outermost repeated containers only
    groups = [g for g in groups if not any(g != o and g.startswith(o + ".") for o in groups)]
    if not groups:
        return None
    alt = "|".join(re.escape(g) for g in sorted(groups, key=len, reverse=True))
    return rf"^(?P<group>{alt})\.(?P<index>\d+)\."
