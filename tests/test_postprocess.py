"""Post-processing steps on hand-made masks."""

import numpy as np

from unet_keras.postprocess import PostProcess, cumulative_steps


def ring_and_specks() -> np.ndarray:
    probs = np.zeros((40, 40), np.float32)
    probs[5:25, 5:25] = 0.9          # a 20x20 blob ...
    probs[10:15, 10:15] = 0.2        # ... with a 5x5 hole
    probs[30:32, 30:32] = 0.8        # a 4-pixel speck
    probs[35, 2] = 0.7               # a 1-pixel speck
    return probs


def test_threshold_only():
    mask = PostProcess()(ring_and_specks())
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask.sum() == 400 - 25 + 4 + 1


def test_fill_holes_then_drop_small_then_keep_largest():
    probs = ring_and_specks()
    assert PostProcess(fill_holes=True)(probs).sum() == 400 + 4 + 1
    assert PostProcess(fill_holes=True, min_size=2)(probs).sum() == 400 + 4
    assert PostProcess(fill_holes=True, keep_largest=True)(probs).sum() == 400
    assert PostProcess(threshold=0.85)(probs).sum() == 400 - 25


def test_steps_are_cumulative_and_batch_apply():
    probs = np.stack([ring_and_specks(), np.zeros((40, 40), np.float32)])
    sums = [step.apply(probs).sum(axis=(1, 2)).tolist()
            for step in cumulative_steps(min_size=3).values()]
    assert sums == [[380, 0], [405, 0], [404, 0], [400, 0]]


def test_fallback_keeps_the_region_around_the_most_probable_pixel_only_when_nothing_passes():
    probs = np.zeros((20, 20), np.float32)
    probs[2:6, 2:6] = 0.30           # a 4x4 region, its peak ...
    probs[3, 3] = 0.32               # ... here, all of it >= 0.32 / 2
    probs[12:14, 12:14] = 0.15       # 4 pixels under half the peak: not part of the guess
    probs[8, 15] = 0.20              # separate from the peak: not part of the guess
    assert PostProcess(threshold=0.35)(probs).sum() == 0               # off: an empty mask
    guess = PostProcess(threshold=0.35, fallback=0.3)(probs)
    expected = np.zeros_like(guess)
    expected[2:6, 2:6] = 1
    np.testing.assert_array_equal(guess, expected)
    assert PostProcess(threshold=0.35, fallback=0.4)(probs).sum() == 0  # peak under 0.4
    # only the slice whose mask is the guess is flagged as one
    assert PostProcess(threshold=0.35, fallback=0.3).best_guess(probs)
    assert not PostProcess(threshold=0.35, fallback=0.4).best_guess(probs)
    assert not PostProcess(threshold=0.35).best_guess(probs)
    # a slice with something above the threshold is left as the threshold makes it
    probs[17, 17] = 0.9
    assert PostProcess(threshold=0.35, fallback=0.1)(probs).sum() == 1
    assert not PostProcess(threshold=0.35, fallback=0.1).best_guess(probs)
    assert PostProcess(threshold=0.35, fallback=0.1)(np.zeros((4, 4), np.float32)).sum() == 0
    assert not PostProcess(threshold=0.35, fallback=0.1).best_guess(np.zeros((4, 4), np.float32))


def test_best_guess_agrees_with_the_mask_it_describes():
    # a pixel exactly at a float32 threshold reaches it: that slice is not a guess
    probs = np.full((8, 8), 0.2, np.float32)
    probs[4, 4] = np.float32(0.35)
    rule = PostProcess(threshold=float(np.float32(0.35)), fallback=0.1)
    assert rule(probs).sum() == 1 and not rule.best_guess(probs)
    # on random slices, at cuts set to their own pixel values: a guess exactly when nothing
    # reaches the cut, the peak reaches the fallback and the mask is the region around it
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = (rng.random((12, 12)) * rng.random()).astype(np.float32)
        t = float(rng.choice(p.ravel())) if rng.random() < 0.5 else float(p.max()) + 1e-3
        rule = PostProcess(threshold=min(t, 0.99), fallback=0.05,
                           keep_largest=bool(rng.random() < 0.5))
        nothing = not (p >= rule.threshold).any()
        mask, guessed = rule.mask_and_guess(p)
        assert guessed == (nothing and p.max() >= 0.05)
        assert guessed == rule.best_guess(p) and np.array_equal(mask, rule(p))
        if guessed:
            assert mask.flat[int(np.argmax(p))] == 1
    # a guess that min_size then drops is an empty mask, not a guess
    tiny = np.zeros((8, 8), np.float32)
    tiny[2, 2] = 0.3
    assert not PostProcess(threshold=0.5, fallback=0.1, min_size=4).best_guess(tiny)
    assert PostProcess(threshold=0.5, fallback=0.1).best_guess(tiny)


def test_describe_names_each_step():
    assert PostProcess().describe() == "no post-processing"
    words = PostProcess(keep_largest=True, fallback=0.3).describe()
    assert "largest region" in words and "0.30" in words


def test_an_overriding_threshold_drops_a_fallback_that_could_never_act(tmp_path):
    from unet_keras.config import ArchConfig
    from unet_keras.inference import load_model, mask_rule
    from unet_keras.model import build_unet
    from unet_keras.model_meta import ModelMeta, write_model_meta

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    build_unet(arch).save(path)
    write_model_meta(path, ModelMeta(arch=arch.to_dict(), threshold=0.35, keep_largest=True,
                                     fallback=0.3))
    model = load_model(path)
    assert mask_rule(model) == PostProcess(threshold=0.35, keep_largest=True, fallback=0.3)
    assert mask_rule(model, threshold=0.6).fallback == 0.3
    assert mask_rule(model, threshold=0.25) == PostProcess(threshold=0.25, keep_largest=True)
    assert mask_rule(model, postprocess=False) == PostProcess(threshold=0.35)
