"""Architecture specs: what a stored network looks like, independent of its weights.

A network is an ordered tuple of layers (linear or conv). Neurons are counted in *neuron
layers*: neuron layer 0 is the input, neuron layer ``k`` (k >= 1) is the output of layer
``k - 1``. Neuron layers ``1 .. L-1`` are hidden; they carry the permutation symmetry.
Convolutional stacks end in a global average pool before the first linear layer, so a
channel of the last conv layer is one input neuron of the following linear layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

ACTIVATIONS = ("identity", "relu", "tanh", "sine", "sigmoid", "gelu", "leaky_relu")
ODD_ACTIVATIONS = frozenset({"identity", "tanh", "sine"})
POSITIVE_HOMOGENEOUS = frozenset({"identity", "relu", "leaky_relu"})


@dataclass(frozen=True)
class Layer:
    """One layer. ``activation`` is applied to its output; ``sine`` means sin(omega * z),
    ``gelu`` the exact (erf) GELU and ``leaky_relu`` slope 0.01 below zero (PyTorch's
    defaults)."""

    kind: str  # "linear" | "conv"
    out_features: int
    in_features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    activation: str = "identity"
    omega: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "conv"):
            raise ValueError(f"layer kind must be 'linear' or 'conv', got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.kind == "linear" and tuple(self.kernel) != (1, 1):
            raise ValueError("a linear layer has no kernel")
        object.__setattr__(self, "kernel", tuple(int(k) for k in self.kernel))

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of one network's weight tensor: (out, in) or (out, in, kh, kw)."""
        if self.kind == "linear":
            return (self.out_features, self.in_features)
        return (self.out_features, self.in_features, *self.kernel)

    @property
    def num_params(self) -> int:
        size = 1
        for d in self.weight_shape:
            size *= d
        return size + self.out_features


@dataclass(frozen=True)
class ArchSpec:
    """A whole architecture.

    ``residual`` holds pairs ``(a, b)`` of neuron-layer indices, ``a < b``: the values of
    the first ``m = min(width_a, width_b)`` neurons of neuron layer ``a`` (after its
    activation) are added to the pre-activation of the first ``m`` neurons of neuron layer
    ``b`` (``residual_joined``; the CNN Wild Park's residuals between unequal widths). For
    convs both must have the same spatial size, which the forward pass needs.
    ``output_offset`` is added to the final output (the DWSNets SIREN adds 0.5).
    """

    layers: tuple[Layer, ...]
    residual: tuple[tuple[int, int], ...] = ()
    output_offset: float = 0.0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "residual", tuple(tuple(map(int, r)) for r in self.residual))
        if not self.layers:
            raise ValueError("an architecture needs at least one layer")
        seen_linear = False
        for i, layer in enumerate(self.layers):
            if layer.kind == "linear":
                seen_linear = True
            elif seen_linear:
                raise ValueError(f"layer {i}: a conv layer cannot follow a linear layer")
            if i and layer.in_features != self.layers[i - 1].out_features:
                raise ValueError(
                    f"layer {i} takes {layer.in_features} inputs but layer {i - 1} "
                    f"gives {self.layers[i - 1].out_features}"
                )
        for a, b in self.residual:
            if not 0 <= a < b <= len(self.layers):
                raise ValueError(f"residual {(a, b)} must join neuron layers a < b of 0 .. {len(self.layers)}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Neuron count of every neuron layer, input first."""
        return (self.layers[0].in_features, *(layer.out_features for layer in self.layers))

    @property
    def residual_joined(self) -> tuple[int, ...]:
        """Per residual ``(a, b)``, how many neurons it joins: ``min(width_a, width_b)``."""
        widths = self.widths
        return tuple(min(widths[a], widths[b]) for a, b in self.residual)

    @property
    def hidden(self) -> tuple[int, ...]:
        """Indices of the hidden neuron layers."""
        return tuple(range(1, len(self.layers)))

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def is_conv(self) -> bool:
        return self.layers[0].kind == "conv"

    def activation_of(self, neuron_layer: int) -> str:
        """Activation that produces the values of ``neuron_layer`` (>= 1)."""
        return self.layers[neuron_layer - 1].activation

    def to_dict(self) -> dict:
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "residual": [list(r) for r in self.residual],
            "output_offset": self.output_offset,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ArchSpec":
        layers = tuple(Layer(**{**d, "kernel": tuple(d["kernel"])}) for d in data["layers"])
        return cls(layers, tuple(map(tuple, data.get("residual", ()))),
                   data.get("output_offset", 0.0), data.get("name", ""))

    def describe(self) -> str:
        """Short human-readable form, e.g. ``2-32-32-1 sine`` or ``conv 1-8-8 | 8-10``."""
        if self.name:
            return self.name
        acts = sorted({layer.activation for layer in self.layers[:-1]})
        body = "-".join(map(str, self.widths))
        kind = "conv " if self.is_conv else ""
        res = " +res" if self.residual else ""
        return f"{kind}{body} {'/'.join(acts) or 'linear'}{res}"


def shared_shape(specs: tuple[ArchSpec, ...] | list[ArchSpec]) -> ArchSpec | None:
    """One spec for architectures that differ only in their activations (the Small CNN
    Zoo's ReLU and tanh networks), so that a method which reads the weights but not the
    activations can take them as one weight space; ``None`` if their weight shapes differ.
    Its layers carry the activation ``identity``: it describes shapes, not a function."""
    def shape(spec: ArchSpec) -> tuple:
        return (tuple(replace(layer, activation="identity", omega=1.0) for layer in spec.layers),
                spec.residual, spec.output_offset)

    shapes = {shape(s) for s in specs}
    if len(shapes) != 1:
        return None
    layers, residual, offset = shapes.pop()
    acts = sorted({layer.activation for spec in specs for layer in spec.layers[:-1]})
    body = ArchSpec(layers, residual, offset).describe().rsplit(" ", 1)[0]
    return ArchSpec(layers, residual, offset, name=f"{body}, shared by {'/'.join(acts)} networks")


def mlp_spec(widths: list[int] | tuple[int, ...], activation: str = "relu", omega: float = 1.0,
             output_offset: float = 0.0, name: str = "") -> ArchSpec:
    """An MLP with ``activation`` on every hidden layer and a linear output."""
    layers = tuple(
        Layer("linear", widths[i + 1], widths[i],
              activation=activation if i < len(widths) - 2 else "identity",
              omega=omega if i < len(widths) - 2 and activation == "sine" else 1.0)
        for i in range(len(widths) - 1)
    )
    return ArchSpec(layers, output_offset=output_offset, name=name)


def siren_spec(hidden: int = 32, depth: int = 2, in_features: int = 2, out_features: int = 1,
               omega: float = 30.0, output_offset: float = 0.5) -> ArchSpec:
    """The DWSNets SIREN: ``depth`` sine layers of width ``hidden``, then a linear output."""
    widths = [in_features] + [hidden] * depth + [out_features]
    name = "siren " + "-".join(map(str, widths))
    return mlp_spec(widths, "sine", omega, output_offset, name)
