"""Each pre-training objective on tiny tensors, checked for its defining property."""

from __future__ import annotations

import torch

from alignbench.train.objectives import completion_loss, hardest_negatives, info_nce, itm_loss, mlm_loss, token_completion_loss


def test_info_nce_is_minimal_when_pairs_align():
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    aligned = info_nce(a, a, 0.05)
    shuffled = info_nce(a, a[torch.randperm(8)], 0.05)
    assert aligned < 0.05 < shuffled
    assert torch.isclose(info_nce(a, 3 * a, 0.05), aligned)  # cosine: scale-free


def test_completion_loss_is_low_for_exact_completion_and_sends_no_gradient_to_target():
    torch.manual_seed(0)
    complete = torch.randn(6, 8, requires_grad=True)
    masked = complete.detach().clone().requires_grad_(True)
    exact = completion_loss(masked, complete, 0.07)
    wrong = completion_loss(torch.randn(6, 8), complete, 0.07)
    assert exact < wrong
    exact.backward()
    assert complete.grad is None and masked.grad is not None


def test_token_completion_counts_only_the_masked_positions():
    torch.manual_seed(0)
    complete = torch.randn(2, 5, 8)
    positions = torch.tensor([[True, False, True, False, False], [False, True, False, False, True]])
    exact = complete.clone().requires_grad_(True)
    loss = token_completion_loss(exact, complete, positions, 0.07)
    elsewhere = exact.detach().clone()
    elsewhere[~positions] = torch.randn(int((~positions).sum()), 8)  # unmasked positions changed
    assert torch.equal(token_completion_loss(elsewhere, complete, positions, 0.07), loss.detach())
    wrong = exact.detach().clone()
    wrong[positions] = torch.randn(int(positions.sum()), 8)
    assert loss < token_completion_loss(wrong, complete, positions, 0.07)
    loss.backward()
    assert exact.grad[~positions].abs().sum() == 0 < exact.grad[positions].abs().sum()


def test_hardest_negative_excludes_self():
    sim = torch.tensor([[9.0, 1.0, 5.0], [2.0, 9.0, 3.0], [7.0, 0.0, 9.0]])
    assert hardest_negatives(sim).tolist() == [2, 2, 0]


def test_itm_and_mlm_losses():
    confident = torch.tensor([[-5.0, 5.0]])
    assert itm_loss(confident, -confident) < 1e-3 < itm_loss(-confident, confident)
    logits = torch.zeros(1, 3, 4)
    logits[0, 1, 2] = 10.0
    labels = torch.tensor([[-100, 2, -100]])
    assert mlm_loss(logits, labels) < 1e-3
    assert mlm_loss(logits, torch.tensor([[-100, 1, -100]])) > 5
