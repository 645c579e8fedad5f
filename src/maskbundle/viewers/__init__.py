"""Looking at a bundle: napari layers (reader and writer) and a QuPath GeoJSON export.

Nothing here imports napari at import time; napari is the optional ``maskbundle[napari]``
extra and loads this package through the npe2 manifest ``napari.yaml``.
"""
