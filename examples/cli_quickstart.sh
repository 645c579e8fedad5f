#!/usr/bin/env bash
# Build a bundle from label files with the command line, then write the upload metadata.
#   bash examples/cli_quickstart.sh [OUT_DIR]
set -euo pipefail
out=${1:-out/cli-example}
mkdir -p "$out/labels"
# make two label files from the synthetic tissue (any TIFF/NPY/PNG label image works)
python - "$out/labels" <<'PY'
import sys
import numpy as np
import tifffile
from maskbundle.synthetic import synthetic_tissue
cells, nuclei = synthetic_tissue((512, 512), seed=2)
tifffile.imwrite(f"{sys.argv[1]}/cells.tif", cells)
np.save(f"{sys.argv[1]}/nuclei.npy", nuclei)
PY
maskbundle bundle "$out/upload/dataset-1" --overwrite \
  --mask cells="$out/labels/cells.tif" --mask nuclei="$out/labels/nuclei.npy" \
  --physical-size 0.5 0.5 \
  --mask-id cells=CL:0000000 --mask-id nuclei=GO:0005634 \
  --protocol-doi 10.17504/protocols.io.example
maskbundle metadata "$out/upload/segmentation-metadata.tsv" "$out/upload/dataset-1" \
  --parent-dataset-id HBM386.ZGKG.235 --overwrite
