"""Recurrent / memory "cores" between the torso and the heads: LSTM, GRU and a gated
transformer-XL (GTrXL) memory.

Run by: the actor processes (one step at a time, carrying each env's core state between agent
steps and sending the state at the start of every unroll) and the learner (the whole
``T + 1``-row unroll at once, starting from that state). Both hold the core inside
:class:`models.actor_critic.ActorCritic`, built by :func:`models.build_model`.
Owns: the per-env state layout (one float32 tensor per env, so it travels over the wire as one
array), exact episode-reset handling and the architectures.

Conventions shared by every core:

* input ``x`` is time-major ``[T, B, input_size]`` float32 features;
* ``state`` is ``[B, *state_shape]`` float32; all zeros is the state at an episode start;
* ``reset`` is ``[T, B]`` bool (or None = no resets): ``reset[t, b]`` means env ``b``'s episode
  starts at step ``t``, so its state is zeroed *before* step ``t`` is processed. Running a
  sequence with a reset at ``t`` therefore gives exactly what running ``[:t]`` and ``[t:]``
  separately (the latter from zeros) gives;
* ``forward`` returns ``([T, B, output_size] outputs, [B, *state_shape] final state)``;
  running ``T`` one-step calls that carry the state gives the same outputs as one ``T``-step
  call (within float tolerance).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Core", "GRUCore", "GatedTransformerCore", "LSTMCore"]


class Core(nn.Module):
    """Base class of the cores (see the module docstring for the shared conventions).

    Attributes:
        input_size: width of the input features.
        output_size: width of the output features (the core size).
        state_shape: per-env state shape.
    """

    input_size: int
    output_size: int
    state_shape: tuple[int, ...]

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        """float32 zeros ``[batch_size, *state_shape]``: the state at an episode start."""
        return torch.zeros((batch_size, *self.state_shape), dtype=torch.float32, device=device)

    def check_inputs(self, x: Tensor, state: Tensor, reset: Tensor | None) -> None:
        """Raise ValueError if ``x``, ``state`` or ``reset`` has the wrong shape."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects [T, B, {self.input_size}] inputs, got "
                f"{tuple(x.shape)}"
            )
        t, b = x.shape[:2]
        if tuple(state.shape) != (b, *self.state_shape):
            raise ValueError(
                f"core_state must be [B, {', '.join(map(str, self.state_shape))}] with B = {b}, "
                f"got {tuple(state.shape)}"
            )
        if reset is not None and tuple(reset.shape) != (t, b):
            raise ValueError(f"reset must be [T, B] = [{t}, {b}], got {tuple(reset.shape)}")

    def forward(
        self, x: Tensor, state: Tensor, reset: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class _RNNCore(Core):
    """Shared reset handling of :class:`LSTMCore` and :class:`GRUCore`.

    The sequence is cut at every step where *any* env resets; each piece runs through one
    fused ``nn.LSTM``/``nn.GRU`` call (cuDNN on the learner's GPU) and, between pieces, the
    state rows of the resetting envs are multiplied by 0. A sequence without resets (and every
    actor step) is one call. Finding the cut points reads ``reset`` on the host (one small
    device sync on the learner).
    """

    rnn: nn.LSTM | nn.GRU

    def _to_rnn(self, state: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _from_rnn(self, hidden: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        raise NotImplementedError

    def forward(
        self, x: Tensor, state: Tensor, reset: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``x [T, B, input_size]``, ``state [B, *state_shape]``, ``reset [T, B]`` bool ->
        ``(outputs [T, B, output_size], final state [B, *state_shape])``, float32.

        Raises:
            ValueError: on wrongly shaped inputs.
        """
        self.check_inputs(x, state, reset)
        x = x.float()
        state = state.float()
        steps = x.shape[0]
        cuts: list[int] = []
        if reset is not None:
            cuts = torch.nonzero(reset.any(dim=1)).flatten().tolist()
        outputs: list[Tensor] = []
        start = 0
        for cut in [*cuts, steps]:
            if cut > start:
                out, hidden = self.rnn(x[start:cut], self._to_rnn(state))
                outputs.append(out)
                state = self._from_rnn(hidden)
            if cut < steps:
                assert reset is not None
                keep = (~reset[cut].bool()).to(state.dtype)
                state = state * keep.view(-1, *([1] * len(self.state_shape)))
            start = cut
        return torch.cat(outputs, dim=0), state


class LSTMCore(_RNNCore):
    """One-layer LSTM (Hochreiter & Schmidhuber 1997), as in IMPALA's recurrent agent.

    State ``[B, 2, hidden_size]``: row 0 is ``h``, row 1 the cell ``c``. Outputs are ``h_t``.
    Initialisation: orthogonal recurrent and input weights per gate block (Saxe et al. 2014),
    zero biases except the forget gate's, which is 1 (Jozefowicz et al. 2015) so the cell
    remembers by default early in training.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.output_size = int(hidden_size)
        self.state_shape = (2, self.output_size)
        self.rnn = nn.LSTM(self.input_size, self.output_size)
        h = self.output_size
        for name, param in self.rnn.named_parameters():
            with torch.no_grad():
                if name.startswith("weight"):
                    for gate in range(4):  # gate blocks i, f, g, o
                        nn.init.orthogonal_(param[gate * h : (gate + 1) * h])
                else:
                    param.zero_()
                    if name.startswith("bias_ih"):  # one of the two biases carries the +1
                        param[h : 2 * h].fill_(1.0)

    def _to_rnn(self, state: Tensor) -> tuple[Tensor, Tensor]:
        return state[:, 0].unsqueeze(0).contiguous(), state[:, 1].unsqueeze(0).contiguous()

    def _from_rnn(self, hidden: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        h, c = hidden
        return torch.stack((h[0], c[0]), dim=1)


class GRUCore(_RNNCore):
    """One-layer GRU (Cho et al. 2014). State ``[B, 1, hidden_size]``; outputs are ``h_t``.

    Initialisation: orthogonal weights per gate block, zero biases.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.output_size = int(hidden_size)
        self.state_shape = (1, self.output_size)
        self.rnn = nn.GRU(self.input_size, self.output_size)
        h = self.output_size
        for name, param in self.rnn.named_parameters():
            with torch.no_grad():
                if name.startswith("weight"):
                    for gate in range(3):  # gate blocks r, z, n
                        nn.init.orthogonal_(param[gate * h : (gate + 1) * h])
                else:
                    param.zero_()

    def _to_rnn(self, state: Tensor) -> Tensor:
        return state.transpose(0, 1).contiguous()

    def _from_rnn(self, hidden: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        assert isinstance(hidden, Tensor)
        return hidden.transpose(0, 1)


class _GRUGate(nn.Module):
    """GTrXL's GRU-type gating layer ``g(x, y)`` (Parisotto et al. 2019, Sec. 3.2):

    ``r = sigmoid(W_r y + U_r x)``, ``z = sigmoid(W_z y + U_z x - b_g)``,
    ``h = tanh(W_g y + U_g (r * x))``, ``g(x, y) = (1 - z) * x + z * h``.

    ``x`` is the residual stream, ``y`` the sub-layer's output. ``b_g = 2`` makes ``z`` ~ 0.12
    at initialisation, so each layer starts close to the identity map -- the reason the paper
    gives for its stable early training (the agent starts out as a reactive policy).
    """

    def __init__(self, size: int, gate_bias: float = 2.0) -> None:
        super().__init__()
        self.size = size
        self.w = nn.Linear(size, 3 * size, bias=False)  # W_r, W_z, W_g
        self.u_rz = nn.Linear(size, 2 * size, bias=False)  # U_r, U_z
        self.u_g = nn.Linear(size, size, bias=False)  # U_g
        self.gate_bias = nn.Parameter(torch.full((size,), float(gate_bias)))  # b_g

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        wr, wz, wg = self.w(y).chunk(3, dim=-1)
        ur, uz = self.u_rz(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.gate_bias)
        h = torch.tanh(wg + self.u_g(r * x))
        return (1.0 - z) * x + z * h


class _GTrXLLayer(nn.Module):
    """One GTrXL block (Parisotto et al. 2019, Sec. 3, "gated identity map reordering"):

    ``Y = MHA(LN([M, E]))``, ``E1 = g_mha(E, ReLU(Y))``, ``F = MLP(LN(E1))``,
    ``E_out = g_mlp(E1, ReLU(F))``.

    Queries come from the current steps ``E``; keys/values from the previous ``window`` steps
    (the memory) followed by ``E``. The memory is kept as this layer's keys and values rather
    than its inputs ``M``: the projection is per token, so the result is the same, and an actor
    step then projects one token instead of ``window + 1``.

    Position enters as a learned per-head bias on the attention logits indexed by the relative
    distance 0..window (Transformer-XL's relative positions, in the simpler learned-bias form
    of Shaw et al. 2018 / Raffel et al. 2020): relative, so a step sees the same logits whether
    it is computed inside a long call or in a one-step call, which makes step-by-step inference
    exact.
    """

    def __init__(self, size: int, heads: int, window: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.size = size
        self.heads = heads
        self.head_dim = size // heads
        self.norm_attn = nn.LayerNorm(size)
        self.qkv = nn.Linear(size, 3 * size)
        self.attn_out = nn.Linear(size, size)
        self.rel_bias = nn.Parameter(torch.zeros(heads, window + 1))
        self.gate_attn = _GRUGate(size)
        self.norm_mlp = nn.LayerNorm(size)
        self.mlp = nn.Sequential(
            nn.Linear(size, mlp_ratio * size), nn.ReLU(), nn.Linear(mlp_ratio * size, size)
        )
        self.gate_mlp = _GRUGate(size)

    def forward(
        self, e: Tensor, memory_kv: Tensor, allowed: Tensor, distance: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One block over the current steps.

        Args:
            e: ``[B, T, D]`` inputs of this layer at the current steps.
            memory_kv: ``[B, W, 2 * D]`` keys then values of the previous ``W`` steps.
            allowed: ``[B, T, W + T]`` bool, which keys each query may attend to.
            distance: ``[T, W + T]`` int64 relative distance, clamped to 0..window.

        Returns:
            ``([B, T, D] outputs, [B, W + T, 2 * D] keys/values of memory and current steps)``.
        """
        b, t, d = e.shape
        q, k, v = self.qkv(self.norm_attn(e)).split(d, dim=-1)
        kv = torch.cat((memory_kv, torch.cat((k, v), dim=-1)), dim=1)  # [B, S, 2D]
        s = kv.shape[1]
        heads = kv.view(b, s, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        bias = self.rel_bias[:, distance]  # [H, T, S]
        # Every query may attend to itself (distance 0, same episode, valid), so no row is all
        # -inf and softmax stays finite.
        mask = bias.unsqueeze(0).masked_fill(~allowed.unsqueeze(1), float("-inf"))
        y = F.scaled_dot_product_attention(q, heads[0], heads[1], attn_mask=mask.to(q.dtype))
        y = self.attn_out(y.transpose(1, 2).reshape(b, t, d))
        e1 = self.gate_attn(e, torch.relu(y))
        return self.gate_mlp(e1, torch.relu(self.mlp(self.norm_mlp(e1)))), kv


class GatedTransformerCore(Core):
    """Gated transformer-XL memory (GTrXL; Parisotto et al. 2019, *Stabilizing Transformers for
    Reinforcement Learning*) over a bounded window of past steps.

    ``Linear(input_size, size)`` embeds each step; ``layers`` :class:`_GTrXLLayer` blocks
    (LayerNorm before attention/MLP, GRU gating instead of residual adds) follow; a final
    LayerNorm gives the ``[T, B, size]`` outputs. In every layer step ``t`` attends to itself
    and the previous ``window`` steps -- never across an episode reset, never to memory slots
    not yet filled -- so the output at ``t`` depends on at most ``layers * window`` past steps
    of the episode (as in Transformer-XL, each layer's memory reaches one window further).

    State ``[B, window, layers * 2 * size + 1]`` float32: slot ``i`` (oldest first, newest
    last) holds, for each layer, that layer's attention key then value (each ``size`` wide) at
    the step ``window - i`` steps before the next one, then a validity flag (1 = a step of the
    current episode, 0 = empty). Invalid slots are all zero, so the zero state is "empty
    memory" and a reset (zeroing) empties it. The memory enters as data, without gradient
    (Transformer-XL's stop-gradient memory); within a call gradients flow through all ``T``
    steps, including the keys/values of those steps.

    Why keys/values rather than the layer inputs TrXL stores: an actor step then costs one
    token's projections per layer instead of ``window + 1`` (at window 32, 2 layers, size 256
    recomputing them cost ~5x the NatureCNN torso per sample), for twice the state size
    (window 32, 1 layer, size 256: 65.7 KB per env, sent once per unroll). The difference in
    learning: the learner does not push gradients into ``W_k``/``W_v`` through memory slots from
    before the unroll (they still learn from the unroll's own steps; the projections are shared
    across positions), and the slots were projected with the actor's (slightly older) weights
    -- the same staleness a stored LSTM state has (Kapturowski et al. 2019, R2D2).
    """

    def __init__(self, input_size: int, size: int, window: int, layers: int, heads: int) -> None:
        """Raises ValueError if ``size`` is not divisible by ``heads`` or a size is < 1."""
        super().__init__()
        if min(input_size, size, window, layers, heads) < 1:
            raise ValueError(
                f"transformer sizes must be >= 1, got input_size={input_size}, size={size}, "
                f"window={window}, layers={layers}, heads={heads}"
            )
        if size % heads:
            raise ValueError(f"core size {size} is not divisible by {heads} heads")
        self.input_size = int(input_size)
        self.output_size = int(size)
        self.window = int(window)
        self.num_layers = int(layers)
        self.state_shape = (self.window, self.num_layers * 2 * self.output_size + 1)
        self.embed = nn.Linear(self.input_size, self.output_size)
        self.layers = nn.ModuleList(
            _GTrXLLayer(self.output_size, int(heads), self.window) for _ in range(layers)
        )
        self.out_norm = nn.LayerNorm(self.output_size)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(
        self, x: Tensor, state: Tensor, reset: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``x [T, B, input_size]``, ``state [B, window, layers * 2 * size + 1]``,
        ``reset [T, B]`` bool -> ``(outputs [T, B, size], final state)``, float32.

        Raises:
            ValueError: on wrongly shaped inputs.
        """
        self.check_inputs(x, state, reset)
        steps, batch = x.shape[:2]
        w, d, n_layers = self.window, self.output_size, self.num_layers
        device = x.device
        state = state.float()
        memory = state[..., :-1].view(batch, w, n_layers, 2 * d)
        mem_valid = state[..., -1] > 0.5  # [B, W]

        # Episode index of every key/query: memory is episode 0; each reset starts a new one.
        if reset is None:
            episode = torch.zeros(batch, steps, dtype=torch.long, device=device)
        else:
            episode = reset.t().long().cumsum(dim=1)  # [B, T]
        key_episode = torch.cat((episode.new_zeros(batch, w), episode), dim=1)  # [B, W+T]
        key_valid = torch.cat((mem_valid, mem_valid.new_ones(batch, steps)), dim=1)
        # Relative distance from query t (key position w + t) to key j; attend within 0..w.
        distance = (
            torch.arange(w, w + steps, device=device)[:, None]
            - torch.arange(w + steps, device=device)[None, :]
        )
        in_window = (distance >= 0) & (distance <= w)  # [T, W+T]
        allowed = (
            in_window.unsqueeze(0)
            & key_valid.unsqueeze(1)
            & (key_episode.unsqueeze(1) == episode.unsqueeze(2))
        )  # [B, T, W+T]
        distance = distance.clamp(0, w)

        e = self.embed(x.float()).transpose(0, 1)  # [B, T, D]
        new_memory: list[Tensor] = []
        for layer_index, layer in enumerate(self.layers):
            e, kv = layer(e, memory[:, :, layer_index], allowed, distance)
            new_memory.append(kv[:, steps:])  # keys/values of the last W steps
        out = self.out_norm(e).transpose(0, 1)  # [T, B, D]

        # Slots from before the last reset (or never filled) become invalid and are zeroed, so
        # the state equals the one a fresh episode would have built.
        valid = (key_valid & (key_episode == episode[:, -1:]))[:, steps:, None].float()  # [B,W,1]
        slots = torch.stack(new_memory, dim=2).reshape(batch, w, n_layers * 2 * d)
        return out, torch.cat((slots * valid, valid), dim=-1)

    def extra_repr(self) -> str:
        return f"window={self.window}, layers={self.num_layers}"
