"""genjax.nn.conv: the phase/custom-vjp ops equal the lax references, values and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import DownConv, UpConv, down_conv, up_conv
from genjax.nn.conv import _fused_up_conv, _phase_up_conv, lax_down_conv, lax_up_conv

# (N, H, W, Cin, Cout): both batch sizes, odd/even/non-square sizes, channels {1, 3, 16}.
UP_CASES = [
    (1, 1, 1, 1, 3),
    (3, 2, 5, 3, 1),
    (1, 5, 4, 16, 3),
    (3, 8, 1, 3, 16),
    (1, 4, 8, 16, 16),
]
DOWN_CASES = [
    (1, 2, 2, 1, 3),
    (3, 4, 2, 3, 1),
    (1, 8, 4, 16, 3),
    (3, 2, 8, 3, 16),
    (1, 8, 8, 16, 16),
]


# Test data comes from numpy: eager jax.random calls would compile a kernel per shape.
def _normal(shape, scale=1.0, seed=0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _inputs(n, h, w, cin, cout):
    return _normal((n, h, w, cin)), _normal((4, 4, cin, cout), 0.3, seed=1)


def _value_and_vjp(op, x, k, g):
    """(op(x, k), d<op(x, k), g>/dx, d<op(x, k), g>/dk)."""
    y, vjp = jax.vjp(op, x, k)
    return (y, *vjp(g))


def _assert_close(actual, expected):
    """Equal within float32 rounding, relative to each array's scale."""
    for a, e in zip(actual, expected):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * (np.abs(e).max() + 1e-6))


def _check_against(op, ref, x, k, other_forms=()):
    """Values and both gradients of op (and values of other_forms) equal ref's, one jit."""

    def both(x, k, g):
        y_ref, *grads_ref = _value_and_vjp(ref, x, k, g)
        ours = _value_and_vjp(op, x, k, g) + tuple(f(x, k) for f in other_forms)
        return ours, (y_ref, *grads_ref) + (y_ref,) * len(other_forms)

    g = _normal(jax.eval_shape(ref, x, k).shape, seed=2)
    _assert_close(*jax.jit(both)(x, k, g))


@pytest.mark.parametrize('n,h,w,cin,cout', UP_CASES)
def test_up_conv_matches_lax(n, h, w, cin, cout):
    x, k = _inputs(n, h, w, cin, cout)
    assert jax.eval_shape(up_conv, x, k).shape == (n, 2 * h, 2 * w, cout)
    # up_conv picks one of the two stride-1 forms by Cout; both must be exact.
    _check_against(up_conv, lax_up_conv, x, k, other_forms=(_phase_up_conv, _fused_up_conv))


@pytest.mark.parametrize('n,h,w,cin,cout', DOWN_CASES)
def test_down_conv_matches_lax(n, h, w, cin, cout):
    x, k = _inputs(n, h, w, cin, cout)
    assert jax.eval_shape(down_conv, x, k).shape == (n, h // 2, w // 2, cout)
    _check_against(down_conv, lax_down_conv, x, k)


def test_up_conv_by_hand():
    """The phase maths of the module docstring on numbers: y[2m] = k0 x[m-1] + k2 x[m] and
    y[2m+1] = k1 x[m] + k3 x[m+1] along H (output column 1 of W = 1 sees only W-tap 1)."""
    x = np.arange(1.0, 4.0, dtype=np.float32).reshape(1, 3, 1, 1)  # x = [1, 2, 3] along H
    k = np.zeros((4, 4, 1, 1), np.float32)
    k[:, 1, 0, 0] = [1.0, 10.0, 100.0, 1000.0]
    expected = [100.0, 10 + 2000, 1 + 200, 20 + 3000, 2 + 300, 30]
    for op in (lax_up_conv, up_conv):
        np.testing.assert_allclose(jax.jit(op)(x, k)[0, :, 1, 0], expected)


@pytest.mark.parametrize(
    'op,ref,shape',
    [(up_conv, lax_up_conv, (2, 3, 2, 3, 2)), (down_conv, lax_down_conv, (2, 4, 2, 3, 2))],
)
def test_second_order_gradients(op, ref, shape):
    """Gradient penalties differentiate the input gradient; the custom rules must allow it."""
    x, k = _inputs(*shape)

    def penalty(f):
        def p(x, k):
            gx = jax.grad(lambda x: jnp.sum(jnp.sin(f(x, k))))(x)
            return jnp.sum(gx**2)

        return jax.jit(jax.grad(p, (0, 1)))

    _assert_close(penalty(op)(x, k), penalty(ref)(x, k))


def _sub_jaxprs(params):
    """The jaxprs inside an equation's params (jit, custom rules, scan, cond branches)."""
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(item, 'eqns'):  # a Jaxpr
                yield item
            elif hasattr(getattr(item, 'jaxpr', None), 'eqns'):  # a ClosedJaxpr
                yield item.jaxpr


def _conv_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == 'conv_general_dilated':
            yield eqn
        for sub in _sub_jaxprs(eqn.params):
            yield from _conv_eqns(sub)


@pytest.mark.parametrize(
    'op,ref,h,cout',
    [(up_conv, lax_up_conv, 5, 2), (up_conv, lax_up_conv, 5, 72), (down_conv, lax_down_conv, 6, 2)],
)
def test_no_lhs_dilated_conv_in_value_and_grad(op, ref, h, cout):
    x, k = _inputs(2, h, 4, 3, cout)

    def lhs_dilations(f):
        loss = lambda x, k: jnp.sum(f(x, k) ** 2)
        jaxpr = jax.make_jaxpr(jax.jit(jax.value_and_grad(loss, (0, 1))))(x, k).jaxpr
        return [e.params['lhs_dilation'] for e in _conv_eqns(jaxpr)]

    ours = lhs_dilations(op)
    assert ours and all(d == (1, 1) for d in ours), ours
    # The reference does have one, so the jaxpr walk does see the convolutions.
    assert any(d != (1, 1) for d in lhs_dilations(ref))


@pytest.mark.parametrize('module,shape', [(UpConv, (2, 3, 5, 3)), (DownConv, (2, 4, 6, 3))])
@pytest.mark.parametrize('use_bias', [True, False])
def test_modules_phase_equals_lax(module, shape, use_bias):
    x = _normal(shape)
    phase, ref = module(4, use_bias=use_bias), module(4, use_bias=use_bias, impl='lax')
    params = jax.jit(phase.init)(jax.random.PRNGKey(1), x)
    ref_params = jax.eval_shape(ref.init, jax.random.PRNGKey(1), x)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, ref_params)
    assert params['params']['kernel'].shape == (4, 4, 3, 4)
    assert ('bias' in params['params']) == use_bias
    # Same params through both impls (a non-zero bias so that it is exercised).
    params = jax.tree.map(lambda p: np.asarray(p) + 0.1, params)
    _assert_close(*jax.jit(lambda p, x: ([phase.apply(p, x)], [ref.apply(p, x)]))(params, x))


def test_module_dtypes_and_init():
    x = np.ones((1, 4, 4, 3), np.float32)
    params = jax.jit(DownConv(8).init)(jax.random.PRNGKey(0), x)['params']
    assert params['kernel'].dtype == jnp.float32 and not np.asarray(params['bias']).any()
    assert 0.015 < np.asarray(params['kernel']).std() < 0.025  # DCGAN normal(0.02)
    for module in (UpConv, DownConv):
        m = module(8, dtype=jnp.bfloat16)
        variables = jax.eval_shape(m.init, jax.random.PRNGKey(0), x)
        assert variables['params']['kernel'].dtype == jnp.float32
        assert jax.eval_shape(m.apply, variables, x).dtype == jnp.bfloat16


def test_shape_errors():
    x, k = _inputs(1, 5, 4, 3, 2)
    with pytest.raises(AssertionError, match='H and W must be even'):
        down_conv(x, k)
    with pytest.raises(AssertionError, match='Cin=3 but x has 2 channels'):
        up_conv(x[..., :2], k)
    with pytest.raises(AssertionError, match=r'\(4, 4, Cin, Cout\)'):
        up_conv(x, k[:3])
    with pytest.raises(ValueError, match='impl'):
        jax.eval_shape(UpConv(2, impl='cudnn').init, jax.random.PRNGKey(0), x)


# Bytes per example (float32, N=8, 4x4x3 input, Cout 4): up_conv's largest is its 8x8x4
# output (1,024 B), down_conv's its 4x4x3 input (192 B); these limits give pieces of 2.
@pytest.mark.parametrize('op,ref,limit', [(up_conv, lax_up_conv, 2048),
                                          (down_conv, lax_down_conv, 400)])
def test_cpu_batch_chunks_change_nothing(op, ref, limit, monkeypatch):
    """With a tiny chunk limit the batch runs in pieces; values and gradients stay exact."""
    from genjax.nn import conv

    x, k = _inputs(8, 4, 4, 3, 4)
    monkeypatch.setattr(conv, '_CPU_CHUNK_BYTES', limit)

    def pieces():  # a fresh function each time: jax caches traces per function
        jaxpr = jax.make_jaxpr(lambda x, k: op(x, k))(x, k).jaxpr
        return sum('custom' in e.primitive.name for e in jaxpr.eqns)

    assert pieces() == 4  # one custom-vjp call per piece of 2
    _check_against(lambda x, k: op(x, k), ref, x, k)
    monkeypatch.setattr(conv, '_CPU_CHUNK_BYTES', 2**20)
    assert pieces() == 1  # small enough: one piece
