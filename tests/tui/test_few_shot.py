"""The curated-examples cache behind the app's few-shot toggle, on a real store and a tiny model."""

from __future__ import annotations

import pytest

from core.store import Store
from tui.few_shot import CuratedExamples

GRAPHS = "Graph neural networks predict molecular properties from atoms and bonds."
VISION = "Vision networks classify images by attending over patches."


@pytest.fixture
def generator(tiny_llama_dir):
    from core.generate import TitleGenerator
    from core.models import load_model

    return TitleGenerator(*load_model(str(tiny_llama_dir)))


def test_curated_examples_rebuild_the_index_only_after_the_store_changed(tmp_path, generator, retriever_builds):
    builds = retriever_builds
    store = Store(tmp_path / "titlecraft.db")
    examples = CuratedExamples()
    query = "Message passing networks for molecules and their bonds."
    assert examples.for_prompt(store, generator, query, 40) == []  # nothing curated: no index at all
    assert builds == []

    graphs = store.add_abstract(GRAPHS)
    store.own_title(graphs, "Molecular property prediction with graph networks")
    assert examples.for_prompt(store, generator, query, 40) == [(GRAPHS, "Molecular property prediction with graph networks")]
    assert examples.for_prompt(store, generator, query, 40)  # same store state: the index is reused
    assert len(builds) == 1

    vision = store.add_abstract(VISION)
    store.own_title(vision, "Patch attention for image classification")
    found = examples.for_prompt(store, generator, query, 40)
    assert len(builds) == 2 and found[0][0] == GRAPHS and len(found) == 2
    # The abstract being titled is never its own example.
    assert [pair[0] for pair in examples.for_prompt(store, generator, VISION, 40)] == [GRAPHS]
    store.close()
