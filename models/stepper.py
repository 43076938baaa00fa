"""A fast NumPy twin of the latent RNN's dreaming step, for CPU rates of tens of thousands of steps/s."""

from __future__ import annotations

import numpy as np
import torch

from .rnn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, LatentRNN

NOISE_BLOCK = 1024  # steps of random numbers drawn at once


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class LatentStepper:
    """Steps one dream of a LatentRNN in float32 NumPy: the same maths as `rnn.step` + sample + advance.

    Mixture components are chosen with the Gumbel-max trick, so each step consumes K Gumbel and
    D normal draws from the stepper's own PCG64 generator: a seed reproduces the trajectory.
    """

    def __init__(self, rnn: LatentRNN, *, temperature: float = 1.0, seed: int = 0) -> None:
        c = rnn.config
        self.config, self.temperature = c, max(float(temperature), 1e-3)
        self.layers = [self._layer_weights(rnn.core, i) for i in range(c.num_layers)]
        self.head_w = rnn.head.weight.detach().cpu().numpy().astype(np.float32)
        self.head_b = rnn.head.bias.detach().cpu().numpy().astype(np.float32)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Start drawing random numbers from a fresh generator seeded with `seed`."""
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._noise_at = NOISE_BLOCK  # the next draw fills a new block from the new generator

    @staticmethod
    def _layer_weights(core: torch.nn.Module, i: int) -> tuple[np.ndarray, ...]:
        get = lambda n: getattr(core, f"{n}_l{i}").detach().cpu().numpy().astype(np.float32)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def state_from_torch(self, state) -> list:
        """Torch state (L,1,H) or ((L,1,H),(L,1,H)) -> per-layer NumPy state."""
        if state is None:
            zeros = np.zeros(self.config.hidden_size, np.float32)
            return [(zeros, zeros) if self.config.cell == "lstm" else zeros
                    for _ in range(self.config.num_layers)]
        if self.config.cell == "lstm":
            h, c = (s[:, 0].detach().cpu().numpy() for s in state)
            return [(h[i], c[i]) for i in range(len(h))]
        return list(state[:, 0].detach().cpu().numpy())

    def state_to_torch(self, state: list, device: torch.device | str = "cpu"):
        """Per-layer NumPy state -> torch state with batch 1 (for `rnn.step`)."""
        if self.config.cell == "lstm":
            h = torch.from_numpy(np.stack([s[0] for s in state]))[:, None]
            c = torch.from_numpy(np.stack([s[1] for s in state]))[:, None]
            return h.to(device), c.to(device)
        return torch.from_numpy(np.stack(state))[:, None].to(device)

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        if self._noise_at >= NOISE_BLOCK:
            k, d = self.config.components, self.config.latent_size
            self._gumbel = self.rng.gumbel(size=(NOISE_BLOCK, k)).astype(np.float32)
            self._normal = self.rng.standard_normal((NOISE_BLOCK, d), dtype=np.float32)
            self._noise_at = 0
        i = self._noise_at
        self._noise_at += 1
        return self._gumbel[i], self._normal[i]

    def core(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """One step of the recurrent core: latent (D,) -> top hidden (H,), new state."""
        new = []
        for (w_ih, w_hh, b_ih, b_hh), s in zip(self.layers, state):
            if self.config.cell == "gru":
                gi, gh = w_ih @ x + b_ih, w_hh @ s + b_hh
                H = s.shape[0]
                rz = _sigmoid(gi[:2 * H] + gh[:2 * H])
                n = np.tanh(gi[2 * H:] + rz[:H] * gh[2 * H:])
                x = n + rz[H:] * (s - n)
                new.append(x)
            else:
                h, c = s
                g = w_ih @ x + w_hh @ h + (b_ih + b_hh)
                H = h.shape[0]
                gates = _sigmoid(g)  # input, forget, (unused), output
                c = gates[H:2 * H] * c + gates[:H] * np.tanh(g[2 * H:3 * H])
                x = gates[3 * H:] * np.tanh(c)
                new.append((x, c))
        return x, new

    def head_value(self, hidden: np.ndarray, gumbel: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Hidden (H,) and noise -> the sampled head value (D,) (deterministic head: its mean)."""
        c, d = self.config, self.config.latent_size
        if c.head == "deterministic":
            return self.head_w @ hidden + self.head_b
        k = c.components
        logits = self.head_w[:k] @ hidden + self.head_b[:k]
        pick = int(np.argmax(logits / self.temperature + gumbel))
        rows = slice(k + pick * 2 * d, k + (pick + 1) * 2 * d)  # only the chosen Gaussian
        raw = self.head_w[rows] @ hidden + self.head_b[rows]
        mu, log_sigma = raw[:d], raw[d:]
        sigma = np.exp(np.clip(log_sigma, LOG_SIGMA_MIN, LOG_SIGMA_MAX)) * np.sqrt(self.temperature)
        return mu + sigma * normal

    def advance(self, x: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Current latent and head value -> next latent (residual step, sphere projection)."""
        nxt = x + value if self.config.residual else value
        if self.config.sphere:
            nxt = nxt - nxt.mean()
            nxt = nxt / max(float(np.sqrt(np.dot(nxt, nxt) / nxt.shape[0])), 1e-6)
        return nxt.astype(np.float32, copy=False)

    def run(self, x: np.ndarray, state: list, steps: int,
            out: np.ndarray | None = None) -> tuple[np.ndarray, list]:
        """Advance `steps` times from latent x (D,); write each new latent into out[i] if given."""
        for i in range(steps):
            hidden, state = self.core(x, state)
            x = self.advance(x, self.head_value(hidden, *self._draw()))
            if out is not None:
                out[i] = x
        return x, state
