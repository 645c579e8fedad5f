"""Label volumes to closed triangle meshes (pure until export; see ``maskbundle.io.glb``)."""

from .labels import ObjectMesh, default_max_error, mesh_labels

__all__ = ["ObjectMesh", "default_max_error", "mesh_labels"]
