from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components._image import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def build_graphs(data: Input[Dataset], profile: str, overrides: dict, store_uri: str, graphs: Output[Dataset]):
    """Build AST + control-flow + data-flow graphs for every function, in shards (cached in the store)."""
    from streamguard.config import load_config
    from streamguard.graphs import build_graphs as run
    from streamguard.stage import run_stage
    from streamguard.storage import open_store

    def go():
        cfg = load_config(profile, overrides)
        return run(data.path, graphs.path, store=open_store(store_uri or None), max_nodes=cfg.gnn.max_nodes)

    report = run_stage(go)
    graphs.metadata.update({k: v for k, v in report.items() if isinstance(v, (int, float, str))})
