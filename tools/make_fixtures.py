#!/usr/bin/python3
"""Write tests/data/pytorch_fixtures.txt: PyTorch reference values for rdrop.

Run it with Debian's interpreter, which has Debian's python3-torch (1.13):

    /usr/bin/python3 tools/make_fixtures.py

Call /usr/bin/python3 explicitly: the `python3` first on PATH may be another
interpreter without torch. The output is deterministic (fixed seed, float64,
CPU): re-running reproduces the file byte for byte.

Every case holds inputs, the loss value and the gradient with respect to
every logits input, from autograd. Inputs are rounded to float32 values
(kept in float64) so that the C++ float test reads exactly the same inputs.

File format (line oriented; tests/test_pytorch_fixtures.cpp parses it):

    # comment
    format rdrop-pytorch-fixtures 1
    case <name>                  starts a case
    <key> <word or number>       a scalar or a word
    <key> <n> <n numbers>        a vector (labels, per-row values)
    <key> <r> <c> <r*c numbers>  a row-major matrix
    end                          ends a case
    cases <count>                last line: the number of cases

Numbers are printed with repr(), which round-trips through strtod; inf and
-inf appear as `inf` and `-inf`.

Case kinds (the `op` key) and the rdrop functor each one checks:

    cross_entropy  F.cross_entropy(logits, labels, reduction, ignore_index,
                   label_smoothing). keys: reduction (mean|sum|none),
                   ignore_index, label_smoothing, logits, labels, value
                   (mean|sum) or values (none), grad (of the reduced loss; of
                   values.sum() for none).
    kl             KL(p||q) = F.kl_div(F.log_softmax(b,-1), F.softmax(a,-1)),
                   p = softmax(a), q = softmax(b). keys: reduction
                   (mean = 'batchmean' | sum), a, b, value, values (per pair),
                   grad_a, grad_b.
    symmetric_kl   0.5*(KL(p||q) + KL(q||p)), same keys as kl.
    rdrop          the R-Drop loss on the 2B-row output. keys: normalization
                   (PyTorchReadme | KerasCode | Fairseq), layout (Stacked |
                   Interleaved), alpha, ignore_index, label_smoothing, logits
                   (2B x C), labels (B, once per sample), value, grad.
                   Fairseq cases add padding_index, smoothing_style
                   (ExcludeTarget), batch and time: logits are [2B, T, V]
                   flattened to 2B*T rows, labels [B, T] flattened.

Classes at -inf in both rows of a pair (masked classes) make F.kl_div give
nan; their true contribution is 0, so those references drop the masked
columns row by row (the same quantity) and their gradient entries are 0.
Where softmax(a) underflows to exact zeros (logits ~1e4), autograd through
F.kl_div's target gives 0 * -inf = nan, so those use F.kl_div(...,
log_target=True) on log_softmax(a): the same KL with a finite gradient.
"""

import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("make_fixtures.py needs torch: run it with /usr/bin/python3 (Debian's python3-torch)")

SEED = 20210628  # fixed: the file must be reproducible
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                   "pytorch_fixtures.txt")

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)  # one summation order, whatever the machine


# ---------------------------------------------------------------- inputs

def as_float32_values(x):
    """float64 tensor holding float32 values, so both C++ types read the same."""
    return x.float().double()


def randn(rows, cols, scale=1.0):
    return as_float32_values(torch.randn(rows, cols) * scale)


def labels(n, classes, ignored=(), ignore_index=-100):
    y = torch.randint(0, classes, (n,))
    if 0 <= ignore_index < classes:  # a class used as ignore label: keep it for ignored rows only
        y[y == ignore_index] = (ignore_index + 1) % classes
    for i in ignored:
        y[i] = ignore_index
    return y


def mask(x, columns_by_row):
    """Sets x[i, j] = -inf for j in columns_by_row[i]."""
    x = x.clone()
    for i, cols in columns_by_row.items():
        for j in cols:
            x[i, j] = float("-inf")
    return x


# ------------------------------------------------------------- references

def kl_div(a, b, reduction):
    """F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction): KL(p||q).

    Where softmax(a) underflows to exact zeros (|logits| ~ 1e4) autograd's
    gradient of the target's xlogy is 0 * -inf = nan, so those inputs use
    F.kl_div's log_target form: the same KL with a finite gradient.
    """
    if (F.softmax(a, -1) > 0).all():
        return F.kl_div(F.log_softmax(b, -1), F.softmax(a, -1), reduction=reduction)
    return F.kl_div(F.log_softmax(b, -1), F.log_softmax(a, -1), reduction=reduction,
                    log_target=True)


def kl_rows(a, b):
    """KL(softmax(a) || softmax(b)) of every row pair, from kl_div.

    Classes at -inf in both rows are dropped row by row (F.kl_div gives nan
    for them; their true contribution is 0), which leaves autograd a zero
    gradient there.
    """
    if torch.isfinite(a).all() and torch.isfinite(b).all():
        return kl_div(a, b, "none").sum(-1)
    rows = []
    for i in range(a.shape[0]):
        keep = torch.isfinite(a[i])
        assert torch.equal(keep, torch.isfinite(b[i])), "a mask must be the same in both rows"
        rows.append(kl_div(a[i][keep], b[i][keep], "sum"))
    return torch.stack(rows)


def kl(a, b, reduction):
    if torch.isfinite(a).all() and torch.isfinite(b).all():
        return kl_div(a, b, {"mean": "batchmean", "sum": "sum"}[reduction])
    per = kl_rows(a, b)
    return per.sum() / a.shape[0] if reduction == "mean" else per.sum()


def symmetric_kl(a, b, reduction):
    return 0.5 * (kl(a, b, reduction) + kl(b, a, reduction))


def compute_kl_loss(p, q):
    """The official R-Drop README's compute_kl_loss (github dropreg/R-Drop),
    without pad_mask:
        p_loss = F.kl_div(F.log_softmax(p, dim=-1), F.softmax(q, dim=-1), reduction='none')
        q_loss = F.kl_div(F.log_softmax(q, dim=-1), F.softmax(p, dim=-1), reduction='none')
        return (p_loss.sum() + q_loss.sum()) / 2
    through kl_div / kl_rows for underflowing softmaxes and masked classes."""
    if torch.isfinite(p).all() and torch.isfinite(q).all():
        p_loss = kl_div(q, p, "none")
        q_loss = kl_div(p, q, "none")
        p_loss = p_loss.sum()
        q_loss = q_loss.sum()
        return (p_loss + q_loss) / 2
    return (kl_rows(q, p).sum() + kl_rows(p, q).sum()) / 2


def readme_loss(logits, logits2, label, alpha, ignore_index, eps):
    """The README's loss: 0.5*(CE1 + CE2) + alpha * compute_kl_loss."""
    ce_loss = 0.5 * (F.cross_entropy(logits, label, ignore_index=ignore_index, label_smoothing=eps)
                     + F.cross_entropy(logits2, label, ignore_index=ignore_index,
                                       label_smoothing=eps))
    kl_loss = compute_kl_loss(logits, logits2)
    return ce_loss + alpha * kl_loss


def keras_loss(y_pred, y_true, alpha, ignore_index, eps):
    """The seed blog's Keras form on an interleaved batch [a, a, b, b, ...]:
    mean(CE) + mean(kld(y[::2], y[1::2]) + kld(y[1::2], y[::2])) / 4 * alpha."""
    loss_ce = F.cross_entropy(y_pred, y_true, ignore_index=ignore_index, label_smoothing=eps)
    loss_kl = kl_rows(y_pred[::2], y_pred[1::2]) + kl_rows(y_pred[1::2], y_pred[::2])
    return loss_ce + loss_kl.mean() / 4 * alpha


# ---------------------------------------------------------------- output

def num(x):
    return repr(float(x))


class Writer:
    def __init__(self):
        self.lines = [
            "# PyTorch reference values for rdrop's tests.",
            "# Generated by tools/make_fixtures.py (run with /usr/bin/python3); do not edit.",
            "# torch " + torch.__version__.split("+")[0] + ", float64, seed " + str(SEED),
            "format rdrop-pytorch-fixtures 1",
        ]
        self.names = set()

    def case(self, name, **fields):
        assert name not in self.names, name
        self.names.add(name)
        self.lines.append("case " + name)
        for key, value in fields.items():
            self.lines.append(key + " " + self.field(value))
        self.lines.append("end")

    @staticmethod
    def field(value):
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return num(value) if isinstance(value, float) else str(value)
        t = value.detach()
        if t.dtype == torch.int64:
            assert t.dim() == 1
            return " ".join([str(t.shape[0])] + [str(int(v)) for v in t.tolist()])
        if t.dim() == 0:
            return num(t.item())
        if t.dim() == 1:
            return " ".join([str(t.shape[0])] + [num(v) for v in t.tolist()])
        assert t.dim() == 2
        return " ".join([str(t.shape[0]), str(t.shape[1])] + [num(v) for v in t.flatten().tolist()])

    def text(self):
        return "\n".join(self.lines + ["cases " + str(len(self.names))]) + "\n"


def finite(*tensors):
    for t in tensors:
        assert torch.isfinite(t).all(), "a reference is not finite"


# ------------------------------------------------------------------ cases

def cross_entropy_case(w, name, x, y, reduction="mean", ignore_index=-100, eps=0.0):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(x, y, reduction=reduction, ignore_index=ignore_index,
                           label_smoothing=eps)
    (loss.sum() if reduction == "none" else loss).backward()
    finite(loss, x.grad)
    result = {"values": loss} if reduction == "none" else {"value": loss}
    w.case(name, op="cross_entropy", reduction=reduction, ignore_index=ignore_index,
           label_smoothing=float(eps), logits=x, labels=y, **result, grad=x.grad)


def divergence_case(w, name, op, a, b, reduction):
    a = a.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)  # no detach: both sides get gradient
    fn = kl if op == "kl" else symmetric_kl
    loss = fn(a, b, reduction)
    loss.backward()
    with torch.no_grad():
        values = kl_rows(a, b) if op == "kl" else 0.5 * (kl_rows(a, b) + kl_rows(b, a))
    finite(loss, values, a.grad, b.grad)
    w.case(name, op=op, reduction=reduction, a=a, b=b, value=loss, values=values,
           grad_a=a.grad, grad_b=b.grad)


def readme_case(w, name, logits, logits2, y, alpha, ignore_index=-100, eps=0.0):
    """rdrop: Normalization::PyTorchReadme, Layout::Stacked on [logits; logits2]."""
    x = torch.cat([logits, logits2]).requires_grad_(True)
    first, second = x.chunk(2)
    loss = readme_loss(first, second, y, alpha, ignore_index, eps)
    loss.backward()
    finite(loss, x.grad)
    w.case(name, op="rdrop", normalization="PyTorchReadme", layout="Stacked", alpha=float(alpha),
           ignore_index=ignore_index, label_smoothing=float(eps), logits=x, labels=y,
           value=loss, grad=x.grad)


def keras_case(w, name, logits, y, alpha, ignore_index=-100, eps=0.0):
    """rdrop: Normalization::KerasCode, Layout::Interleaved; logits are 2B rows
    [a, a, b, b, ...] (rows 2i, 2i+1: sample i), y once per sample."""
    x = logits.clone().requires_grad_(True)
    y_rows = y.repeat_interleave(2)  # the blog's generator repeats each label
    loss = keras_loss(x, y_rows, alpha, ignore_index, eps)
    loss.backward()
    finite(loss, x.grad)
    w.case(name, op="rdrop", normalization="KerasCode", layout="Interleaved", alpha=float(alpha),
           ignore_index=ignore_index, label_smoothing=float(eps), logits=x, labels=y,
           value=loss, grad=x.grad)


def fairseq_label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index):
    """fairseq's label_smoothed_nll_loss (criterions/label_smoothed_cross_entropy.py)."""
    target = target.unsqueeze(-1)
    nll_loss = -lprobs.gather(dim=-1, index=target)
    smooth_loss = -lprobs.sum(dim=-1, keepdim=True)
    pad_mask = target.eq(ignore_index)
    nll_loss = nll_loss.masked_fill(pad_mask, 0.0)
    smooth_loss = smooth_loss.masked_fill(pad_mask, 0.0)
    nll_loss = nll_loss.sum()
    smooth_loss = smooth_loss.sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    return (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss


def fairseq_rdrop_loss(net_output, target, alpha, epsilon, padding_idx):
    """The R-Drop repository's fairseq criterion (reg_label_smoothed_cross_entropy):
    the batch is concatenated with itself, label-smoothed CE summed over both
    copies plus alpha * compute_kl_loss with the padding masked, and the
    trainer divides by sample_size = ntokens (non-pad tokens of one copy)."""
    lprobs = F.log_softmax(net_output, dim=-1)
    target2 = torch.cat([target, target.clone()], 0)
    loss = fairseq_label_smoothed_nll_loss(lprobs.view(-1, lprobs.size(-1)), target2.view(-1), epsilon,
                                           padding_idx)
    pad_mask = target.unsqueeze(-1).eq(padding_idx)
    net_prob = F.log_softmax(net_output, dim=-1)
    net_prob_tec = F.softmax(net_output, dim=-1)
    p, q = torch.split(net_prob, net_prob.size(0) // 2, dim=0)
    p_tec, q_tec = torch.split(net_prob_tec, net_prob_tec.size(0) // 2, dim=0)
    p_loss = F.kl_div(p, q_tec, reduction="none").masked_fill(pad_mask, 0.0)
    q_loss = F.kl_div(q, p_tec, reduction="none").masked_fill(pad_mask, 0.0)
    kl_loss = (p_loss.sum() + q_loss.sum()) / 2
    ntokens = target.ne(padding_idx).sum()
    return (loss + alpha * kl_loss) / ntokens


def fairseq_case(w, name, batch, time, vocab, lengths, alpha, eps, padding_idx=1):
    """rdrop: Normalization::Fairseq, Layout::Stacked, SmoothingStyle::ExcludeTarget,
    padding_index; logits [2B, T, V] flattened to 2B*T rows."""
    base = torch.randn(batch, time, vocab) * 2.0
    x = as_float32_values(torch.cat([base + 0.5 * torch.randn(batch, time, vocab),
                                     base + 0.5 * torch.randn(batch, time, vocab)]))
    x.requires_grad_(True)
    target = torch.randint(2, vocab, (batch, time))  # real tokens avoid the padding index
    for i, n in enumerate(lengths):
        target[i, n:] = padding_idx
    loss = fairseq_rdrop_loss(x, target, alpha, eps, padding_idx)
    loss.backward()
    finite(loss, x.grad)
    w.case(name, op="rdrop", normalization="Fairseq", layout="Stacked", alpha=float(alpha),
           ignore_index=-100, padding_index=padding_idx, smoothing_style="ExcludeTarget",
           label_smoothing=float(eps), batch=batch, time=time, logits=x.reshape(-1, vocab),
           labels=target.reshape(-1), value=loss, grad=x.grad.reshape(-1, vocab))


def dropout_pair(rows, cols, spread=0.5, scale=2.0):
    """Two copies that differ the way two dropout passes do: a shared part
    plus a smaller independent one."""
    base = torch.randn(rows, cols) * scale
    return (as_float32_values(base + spread * torch.randn(rows, cols)),
            as_float32_values(base + spread * torch.randn(rows, cols)))


def main():
    torch.manual_seed(SEED)
    w = Writer()

    # Cross-entropy: reductions, ignore_index, label smoothing, shapes.
    cross_entropy_case(w, "ce_1x1_mean", randn(1, 1), labels(1, 1))
    cross_entropy_case(w, "ce_1x1_smooth0.3_sum", randn(1, 1), labels(1, 1), "sum", eps=0.3)
    cross_entropy_case(w, "ce_1x4_mean", randn(1, 4), labels(1, 4))
    for shape in [(3, 5), (7, 10)]:
        r, c = shape
        tag = "%dx%d" % shape
        for reduction in ["mean", "sum", "none"]:
            cross_entropy_case(w, "ce_%s_%s" % (tag, reduction), randn(r, c, 2.0), labels(r, c),
                               reduction)
        for reduction in ["mean", "sum", "none"]:
            cross_entropy_case(w, "ce_%s_ignore_default_%s" % (tag, reduction), randn(r, c, 2.0),
                               labels(r, c, ignored=(1,)), reduction)
        cross_entropy_case(w, "ce_%s_ignore_custom_mean" % tag, randn(r, c, 2.0),
                           labels(r, c, ignored=(0, r - 1), ignore_index=3), "mean", ignore_index=3)
        for eps in [0.1, 0.3]:
            for reduction in ["mean", "sum", "none"]:
                cross_entropy_case(w, "ce_%s_smooth%g_%s" % (tag, eps, reduction),
                                   randn(r, c, 2.0), labels(r, c), reduction, eps=eps)
        for reduction in ["mean", "sum", "none"]:
            cross_entropy_case(w, "ce_%s_ignore_smooth0.1_%s" % (tag, reduction), randn(r, c, 2.0),
                               labels(r, c, ignored=(1,)), reduction, eps=0.1)
        cross_entropy_case(w, "ce_%s_ignore_custom_smooth0.3_mean" % tag, randn(r, c, 2.0),
                           labels(r, c, ignored=(0,), ignore_index=7), "mean", ignore_index=7,
                           eps=0.3)
    # Mean over the 17 rows left after ignoring some of 20.
    cross_entropy_case(w, "ce_20x33_ignore_smooth0.2_mean", randn(20, 33, 3.0),
                       labels(20, 33, ignored=(2, 11, 19)), "mean", eps=0.2)

    # KL(p||q) and the symmetric KL, both sides with gradient.
    for op in ["kl", "symmetric_kl"]:
        for shape in [(1, 3), (3, 5), (7, 10)]:
            r, c = shape
            for reduction in ["mean", "sum"]:
                divergence_case(w, "%s_%dx%d_%s" % (op, r, c, reduction), op, randn(r, c, 2.0),
                                randn(r, c, 2.0), reduction)
        a, b = dropout_pair(6, 12)
        divergence_case(w, "%s_6x12_close_mean" % op, op, a, b, "mean")
        a = randn(4, 6)
        divergence_case(w, "%s_4x6_identical_sum" % op, op, a, a.clone(), "sum")

    # The official PyTorch README loss (Stacked, PyTorchReadme).
    for alpha in [0.0, 1.0, 4.0]:
        a, b = dropout_pair(4, 6)
        readme_case(w, "readme_b4_c6_alpha%g" % alpha, a, b, labels(4, 6), alpha)
    a, b = dropout_pair(5, 7)
    readme_case(w, "readme_b5_c7_alpha1_ignore", a, b, labels(5, 7, ignored=(1, 3)), 1.0)
    a, b = dropout_pair(5, 7)
    readme_case(w, "readme_b5_c7_alpha4_ignore_custom", a, b,
                labels(5, 7, ignored=(0,), ignore_index=2), 4.0, ignore_index=2)
    a, b = dropout_pair(6, 9)
    readme_case(w, "readme_b6_c9_alpha1_smooth0.1", a, b, labels(6, 9), 1.0, eps=0.1)
    a, b = dropout_pair(6, 9)
    readme_case(w, "readme_b6_c9_alpha4_ignore_smooth0.3", a, b, labels(6, 9, ignored=(5,)), 4.0,
                eps=0.3)
    readme_case(w, "readme_b3_c5_alpha1_independent", randn(3, 5, 2.0), randn(3, 5, 2.0),
                labels(3, 5), 1.0)

    # The seed blog's Keras form (Interleaved, KerasCode).
    for alpha in [0.0, 1.0, 4.0]:
        a, b = dropout_pair(4, 6)
        keras_case(w, "keras_b4_c6_alpha%g" % alpha, torch.stack([a, b], 1).reshape(8, 6),
                   labels(4, 6), alpha)
    a, b = dropout_pair(5, 7)
    keras_case(w, "keras_b5_c7_alpha1_ignore", torch.stack([a, b], 1).reshape(10, 7),
               labels(5, 7, ignored=(2,)), 1.0)
    a, b = dropout_pair(6, 9)
    keras_case(w, "keras_b6_c9_alpha4_ignore_smooth0.1", torch.stack([a, b], 1).reshape(12, 9),
               labels(6, 9, ignored=(0, 4)), 4.0, eps=0.1)

    # Stability: logits of magnitude ~1e4.
    big_a, big_b = randn(4, 8, 1e4), randn(4, 8, 1e4)
    cross_entropy_case(w, "big_ce_4x8_mean", big_a, labels(4, 8))
    cross_entropy_case(w, "big_ce_4x8_smooth0.1_sum", big_b, labels(4, 8), "sum", eps=0.1)
    divergence_case(w, "big_kl_4x8_mean", "kl", big_a, big_b, "mean")
    divergence_case(w, "big_symmetric_kl_4x8_sum", "symmetric_kl", big_a, big_b, "sum")
    # Close copies at ~1e4: each row shifted by ~1e4 with an O(1) spread, so
    # the softmaxes overlap and the KL is O(0.1), not O(1e4) or exactly 0.
    # In float this needs the log-sum-exps' gap taken before rounding at 1e4.
    base = torch.tensor([[1.2e4], [-2.3e4], [5.3e3], [-9.1e3]]) + torch.randn(4, 8) * 2.0
    close_a = as_float32_values(base + 0.5 * torch.randn(4, 8))
    close_b = as_float32_values(base + 0.5 * torch.randn(4, 8))
    cross_entropy_case(w, "big_shift_ce_4x8_smooth0.1_mean", close_a, labels(4, 8), eps=0.1)
    divergence_case(w, "big_shift_kl_4x8_sum", "kl", close_a, close_b, "sum")
    divergence_case(w, "big_shift_symmetric_kl_4x8_mean", "symmetric_kl", close_a, close_b, "mean")
    readme_case(w, "big_readme_b4_c8_alpha1", big_a, big_b, labels(4, 8), 1.0)
    keras_case(w, "big_keras_b4_c8_alpha4", torch.stack([close_a, close_b], 1).reshape(8, 8),
               labels(4, 8), 4.0)

    # Stability: masked classes, -inf in the same class of both copies.
    # Row 3 keeps a single class: its KL and CE are exactly 0.
    masks = {0: [1], 1: [0, 4], 2: [5], 3: [0, 1, 2, 3, 5]}
    ma, mb = dropout_pair(4, 6)
    ma, mb = mask(ma, masks), mask(mb, masks)
    my = torch.tensor([0, 2, 4, 4])  # labels avoid the masked classes
    cross_entropy_case(w, "masked_ce_4x6_mean", ma, my)
    cross_entropy_case(w, "masked_ce_4x6_none", mb, my, "none")
    divergence_case(w, "masked_kl_4x6_mean", "kl", ma, mb, "mean")
    divergence_case(w, "masked_symmetric_kl_4x6_sum", "symmetric_kl", ma, mb, "sum")
    readme_case(w, "masked_readme_b4_c6_alpha1", ma, mb, my, 1.0)
    keras_case(w, "masked_keras_b4_c6_alpha4", torch.stack([ma, mb], 1).reshape(8, 6), my, 4.0)
    # Masked and large together.
    big_masks = {0: [2, 3], 1: [7], 2: [0], 3: [6]}
    mba, mbb = mask(close_a, big_masks), mask(close_b, big_masks)
    divergence_case(w, "masked_big_symmetric_kl_4x8_mean", "symmetric_kl", mba, mbb, "mean")
    readme_case(w, "masked_big_readme_b4_c8_alpha1", mba, mbb, torch.tensor([0, 0, 1, 7]), 1.0)

    # The fairseq translation criterion: sequences with padding.
    fairseq_case(w, "fairseq_b3_t5_v7_alpha5_smooth0.1", 3, 5, 7, [5, 3, 2], 5.0, 0.1)
    fairseq_case(w, "fairseq_b2_t4_v11_alpha0.7_smooth0", 2, 4, 11, [4, 1], 0.7, 0.0)
    fairseq_case(w, "fairseq_b4_t6_v5_alpha3_smooth0.2", 4, 6, 5, [6, 6, 4, 3], 3.0, 0.2)

    text = w.text()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    print("wrote %d cases to %s" % (len(w.names), os.path.normpath(OUT)), file=sys.stderr)


if __name__ == "__main__":
    main()
