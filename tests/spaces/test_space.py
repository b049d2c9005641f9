from __future__ import annotations

from sparsearch.spaces import get_space


def test_the_proxy_recipe_is_the_spaces_unless_given() -> None:
    proxy = get_space("default").proxy
    assert proxy.recipe() == (proxy.dataset, proxy.epochs) == ("easy-vqa", 2)
    assert proxy.recipe("digits") == ("digits", 2)
    assert proxy.recipe(epochs=5) == ("easy-vqa", 5)
    assert proxy.recipe(None, None).data == "easy-vqa"
