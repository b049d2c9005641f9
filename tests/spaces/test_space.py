from __future__ import annotations

from sparsearch.spaces import get_space


def test_the_proxy_recipe_is_the_spaces_unless_given() -> None:
    proxy = get_space("default").proxy
    assert proxy.recipe() == (proxy.dataset, proxy.epochs) == ("easy-vqa", 2)
    assert proxy.recipe("digits") == ("digits", 2)
    assert proxy.recipe(epochs=5) == ("easy-vqa", 5)
    assert proxy.recipe(None, None).data == "easy-vqa"


def test_a_command_parses_its_space_once(tmp_path, monkeypatch) -> None:
    """The space a study stores is the one the command parsed: a factory's model is measured once."""
    import sparsearch.spaces.registry as registry

    path = tmp_path / "s.yaml"
    path.write_text(registry.get_space_and_text("gateconnect_digits")[1])
    calls = []
    real = registry.parse_space
    monkeypatch.setattr(registry, "parse_space", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    space, text = registry.get_space_and_text(str(path))
    assert registry.stored_space(text, str(path)) is space and calls == [str(path)]
    assert registry.stored_space(text + "\n", str(path)) is not space  # other text: parsed again
