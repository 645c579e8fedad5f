"""Label volumes to closed triangle meshes (pure until export; see ``maskbundle.io.glb``)."""

from .labels import ObjectMesh, mesh_labels

__all__ = ["ObjectMesh", "mesh_labels"]
