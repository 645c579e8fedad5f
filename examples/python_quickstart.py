"""Write a two-mask bundle from synthetic tissue, then write the upload metadata TSV.

    python examples/python_quickstart.py [OUT_DIR]

Needs nothing but maskbundle: the tissue is generated (deterministically) on the fly.
"""

from __future__ import annotations

import sys
from pathlib import Path

from maskbundle import write_segmentation_bundle, write_upload_metadata
from maskbundle.synthetic import synthetic_tissue


def main(out: Path) -> None:
    cells, nuclei = synthetic_tissue((1024, 1024), seed=1)
    dataset = write_segmentation_bundle(
        out / "tissue-1",
        {"cells": cells, "nuclei": nuclei},
        physical_size=(0.5, 0.5),
        mask_ids={"cells": "CL:0000000", "nuclei": "GO:0005634"},
        protocol_doi="10.17504/protocols.io.example",
        contributors=[{"first_name": "Ada", "last_name": "Lovelace", "affiliation": "Example Lab",
                       "orcid": "0000-0002-1825-0097", "is_contact": True}],
        overwrite=True,
    )
    tsv = write_upload_metadata(out / "segmentation-metadata.tsv", [dataset],
                                parent_dataset_id="HBM386.ZGKG.235", overwrite=True)
    print(f"wrote {dataset} and {tsv}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/examples"))
