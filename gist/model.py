"""The GIST hybrid graph-transformer autoencoder (the original's ``TransImg``).

Parameter names and shapes follow the original exactly, so its published state dicts load with
``strict=True``. Every layer is a single-head PyG ``TransformerConv``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # PyG 2.8 still calls torch.jit.script at import time
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from torch_geometric.nn import TransformerConv


class TransImg(nn.Module):
    """Gene branch, image branch and a fused branch over one spatial graph.

    Parameters
    ----------
    hidden_dims
        ``[n_genes, img_dim, num_hidden, out_dim]``; the paper uses ``[n_genes, img_dim, 512, 30]``.
    use_img_loss
        When true the image branch reconstructs the image features (``imgconv4`` outputs
        ``img_dim``); otherwise it reconstructs expression, as in the paper.

    Notes
    -----
    ``norm1`` and ``norm2`` are defined but unused, as in the original, so that state-dict keys match.
    ``img_dim = 0`` builds the gene branch alone (for data without an image): no ``imgconv*``,
    ``neck*``, ``c3``, ``c4``; the gene latent and reconstruction then stand in for the fused ones.
    """

    def __init__(self, hidden_dims: Sequence[int], use_img_loss: bool = False) -> None:
        super().__init__()
        if len(hidden_dims) != 4:
            raise ValueError(f"hidden_dims must be [n_genes, img_dim, num_hidden, out_dim], got {list(hidden_dims)}")
        in_dim, img_dim, num_hidden, out_dim = (int(d) for d in hidden_dims)
        self.hidden_dims = [in_dim, img_dim, num_hidden, out_dim]
        self.use_img_loss = use_img_loss

        self.conv1 = TransformerConv(in_dim, num_hidden)
        self.conv2 = TransformerConv(num_hidden, out_dim)
        self.conv3 = TransformerConv(out_dim, num_hidden)
        self.conv4 = TransformerConv(num_hidden, in_dim)

        self.has_image = img_dim > 0
        if self.has_image:
            self.imgconv1 = TransformerConv(img_dim, num_hidden)
            self.imgconv2 = TransformerConv(num_hidden, out_dim)
            self.imgconv3 = TransformerConv(out_dim, num_hidden)
            self.imgconv4 = TransformerConv(num_hidden, img_dim if use_img_loss else in_dim)

            self.neck = TransformerConv(out_dim * 2, out_dim)
            self.neck2 = TransformerConv(out_dim, out_dim)
            self.c3 = TransformerConv(out_dim, num_hidden)
            self.c4 = TransformerConv(num_hidden, in_dim)

        self.norm1 = nn.LayerNorm(num_hidden)
        self.norm2 = nn.LayerNorm(num_hidden)
        self.activate = F.elu

    def forward(self, features: Tensor, img_feat: Tensor | None, edge_index: Tensor) -> tuple[Tensor | None, ...]:
        """Return ``(gene latent, image latent, fused latent, gene recon, image recon, fused recon)``.

        Without an image branch the image outputs are ``None`` and the fused ones are the gene ones.
        """
        h1 = self.activate(self.conv1(features, edge_index))
        h2 = self.conv2(h1, edge_index)
        h3 = self.activate(self.conv3(h2, edge_index))
        h4 = self.conv4(h3, edge_index)
        if not self.has_image:
            return h2, None, h2, h4, None, h4

        img1 = self.activate(self.imgconv1(img_feat, edge_index))
        img2 = self.imgconv2(img1, edge_index)
        img3 = self.activate(self.imgconv3(img2, edge_index))
        img4 = self.imgconv4(img3, edge_index)

        combine = self.activate(self.neck(torch.cat([h2, img2], dim=1), edge_index))
        c2 = self.neck2(combine, edge_index)
        c3 = self.activate(self.c3(c2, edge_index))
        c4 = self.c4(c3, edge_index)
        return h2, img2, c2, h4, img4, c4


def gist_loss(model_out: Sequence[Tensor], x: Tensor, img: Tensor, use_img_loss: bool = False) -> Tensor:
    """The paper's loss: ``0.1 * MSE(x, gene recon) + 0.1 * MSE(target, image recon) + MSE(x, fused recon)``.

    The image reconstruction targets ``img`` when ``use_img_loss`` is true, else ``x``. Without an
    image branch the loss is ``MSE(x, gene recon)``.
    """
    _, _, _, gene_recon, img_recon, fused_recon = model_out
    if img_recon is None:
        return F.mse_loss(gene_recon, x)
    img_target = img if use_img_loss else x
    return 0.1 * F.mse_loss(gene_recon, x) + 0.1 * F.mse_loss(img_recon, img_target) + F.mse_loss(fused_recon, x)


def dims_from_state_dict(state: dict[str, Tensor]) -> tuple[list[int], bool]:
    """Recover ``hidden_dims`` and ``use_img_loss`` from a TransImg state dict."""
    try:
        num_hidden, in_dim = state["conv1.lin_key.weight"].shape
        out_dim = state["conv2.lin_key.weight"].shape[0]
        if "imgconv1.lin_key.weight" not in state:  # gene branch alone
            return [int(in_dim), 0, int(num_hidden), int(out_dim)], False
        img_dim = state["imgconv1.lin_key.weight"].shape[1]
        img_out = state["imgconv4.lin_key.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"not a TransImg state dict: key {err} missing") from None
    use_img_loss = img_out == img_dim and img_out != in_dim
    return [int(in_dim), int(img_dim), int(num_hidden), int(out_dim)], bool(use_img_loss)
