"""The RO-Crate metadata of an archived run (ro-crate-metadata.json), made with the `rocrate` library.

It follows the Workflow Run Crate profile 0.5 (https://w3id.org/ro/wfrun/workflow/0.5, on RO-Crate 1.1):
the Snakefile is the crate's main entity, a ComputationalWorkflow in the Snakemake language, with two
formal inputs, the configuration and the prepared data; one CreateAction is the run, with the workflow
as its instrument, the person who archived it as its agent, its start and end, the resolved
configuration and the data's fingerprint as its object and every table, page and notebook as its
result. The machine each cell ran on is in the provenance files, which say so (`about` the run).
No image is in the crate: the data are named by their source and fingerprint.
"""
from __future__ import annotations

import json
import re

from rocrate.model.contextentity import ContextEntity
from rocrate.model.person import Person
from rocrate.rocrate import ROCrate

from .. import layout, requirements, sources
from ..data import download

METADATA = "ro-crate-metadata.json"
CHECKSUMS = "checksums.sha256"  # the SHA-256 of every other file: `sha256sum -c checksums.sha256` checks them
WORKFLOW = "Snakefile"
VERSION = "1.1"  # the RO-Crate version of Workflow Run Crate 0.5
PROFILES = {"https://w3id.org/ro/wfrun/process/0.5": ("Process Run Crate", "0.5"),
            "https://w3id.org/ro/wfrun/workflow/0.5": ("Workflow Run Crate", "0.5"),
            "https://w3id.org/workflowhub/workflow-ro-crate/1.0": ("Workflow RO-Crate", "1.0")}
BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"
LICENSE = ("https://spdx.org/licenses/MIT", "MIT License")  # pyproject.toml's licence
FORMATS = {".csv": "text/csv", ".json": "application/json", ".html": "text/html", ".pdf": "application/pdf",
           ".ipynb": "application/x-ipynb+json", ".yaml": "application/yaml", ".lock": "text/plain",
           ".sha256": "text/plain"}
RUN, CONFIG, DATA, FINGERPRINT = "#run", "#config", "#data", "#data-fingerprint"


def _format(name: str) -> str:
    return FORMATS.get("." + name.rsplit(".", 1)[-1], "text/plain") if "." in name else "text/x-snakemake"


def _described(name: str, facts: dict) -> dict:
    """What one file of the archive is, for its entity."""
    if name == layout.CONFIG_RECORD:
        return {"name": "the resolved configuration and the config files the run was given",
                "exampleOfWork": {"@id": CONFIG}}
    if name == layout.PREPARED_JSON:
        return {"name": "the prepared data: source, colours, splits and counts", **facts["data_source"]}
    if name == CHECKSUMS:
        return {"name": "the SHA-256 checksum of every other file of the archive (sha256sum -c checksums.sha256)"}
    if name == requirements.LOCK:
        return {"name": "the exact version of every Python package of the environment"}
    if name.endswith("provenance.json") or name.endswith("provenance.csv"):
        return {"name": "where the run ran: machine, CPU, GPU, software, commit", "about": {"@id": RUN}}
    return {}


def _slug(text: str) -> str:
    return "#" + (re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "person")


def _workflow(crate: ROCrate, facts: dict) -> ContextEntity:
    params = [crate.add_formal_parameter(name, kind, identifier=ident, description=text, valueRequired=True)
              for ident, name, kind, text in (
                  (CONFIG, "config", "File", "experiments/config.yaml with the --configfile files merged over it"),
                  (DATA, "data", "Text", "the images, drawn or from DVM-Car, prepared into the uint8 cache, "
                                         "named by their fingerprint"))]
    workflow = crate.add_workflow(dest_path=WORKFLOW, main=True, lang="snakemake",
                                  lang_version=facts["snakemake"],
                                  properties={"name": sources.PACKAGE, "version": facts["commit"] or "unknown",
                                              "description": "One snakemake run trains the grid of (architecture, "
                                                             "optimizer, seed) cells, collects the tables and "
                                                             "renders the report.",
                                              "encodingFormat": _format(WORKFLOW),
                                              "conformsTo": {"@id": BIOSCHEMAS_WORKFLOW}})
    workflow["input"] = params
    return workflow


def build(names: list[str], facts: dict) -> dict:
    """The metadata of an archive holding `names` (paths in the working directory; the Snakefile and
    this file aside, the checksums' file included). `facts`: author, start, end, commit, snakemake, fingerprint, data_source, title,
    description, sizes ({name: bytes})."""
    crate = ROCrate(version=VERSION)
    crate.name, crate.description, crate.datePublished = facts["title"], facts["description"], facts["end"]
    crate.license = crate.add(ContextEntity(crate, LICENSE[0], {"@type": "CreativeWork", "name": LICENSE[1]}))
    for profile, (name, version) in PROFILES.items():
        entity = crate.dereference(profile) or crate.add(ContextEntity(crate, profile, {"@type": "CreativeWork"}))
        entity["name"], entity["version"] = name, version
        crate.root_dataset.append_to("conformsTo", entity)
    workflow = _workflow(crate, facts)
    author = crate.add(Person(crate, _slug(facts["author"]), {"name": facts["author"]}))
    crate.root_dataset["author"] = author
    sizes = {n: {"contentSize": str(facts["sizes"][n])} if n in facts["sizes"] else {} for n in names}
    files = {name: crate.add_file(dest_path=name, properties={
        "encodingFormat": _format(name), **sizes[name], **_described(name, facts)}) for name in names}
    fingerprint = crate.add(ContextEntity(crate, FINGERPRINT, {
        "@type": "PropertyValue", "name": "data fingerprint", "value": facts["fingerprint"],
        "exampleOfWork": {"@id": DATA},
        "description": "carcolor's hash of the prepared data (which file is in which row, labels, pixels)"}))
    inputs = [files[layout.CONFIG_RECORD], files[layout.PREPARED_JSON], fingerprint]
    outputs = [f for name, f in files.items() if f not in inputs and name not in (requirements.LOCK, CHECKSUMS)]
    crate.add_action(workflow, identifier=RUN, object=inputs, result=outputs, properties={
        "name": facts["title"], "description": facts["description"], "agent": {"@id": author.id},
        "startTime": facts["start"], "endTime": facts["end"],
        "actionStatus": "http://schema.org/CompletedActionStatus"})
    crate.root_dataset["mentions"] = crate.dereference(RUN)
    return crate.metadata.generate()


def dumps(metadata: dict) -> str:
    return json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _entities(metadata: dict) -> dict[str, dict]:
    graph = metadata.get("@graph") if isinstance(metadata, dict) else None
    return {e.get("@id"): e for e in graph if isinstance(e, dict)} if isinstance(graph, list) else {}


def problem(metadata: dict) -> str | None:
    """Why these crate metadata are not those of a carcolor run (None when they are): the root's main
    entity must be this project's Snakefile, a ComputationalWorkflow named carcolor."""
    entities = _entities(metadata)
    if not entities:
        return f"{METADATA} has no @graph of entities: not an RO-Crate"
    root_id = ((entities.get(METADATA) or {}).get("about") or {}).get("@id")
    main = ((entities.get(root_id) or {}).get("mainEntity") or {}).get("@id")
    workflow = entities.get(main) or {}
    types = workflow.get("@type") or []
    if "ComputationalWorkflow" not in types or workflow.get("name") != sources.PACKAGE:
        return (f"{METADATA} describes another crate (main entity {main!r}, named {workflow.get('name')!r}), "
                f"not a {sources.PACKAGE} run made by `carcolor archive`")
    return None


def data_source(dataset: dict) -> dict:
    """How the archive names where the images came from (none of them is in it)."""
    if dataset.get("source") == "dvm":
        return {"isBasedOn": {"@id": f"https://doi.org/{download.FIGSHARE_DOI}"},
                "description": f"DVM-Car photographs ({download.LICENCE}); no image is in this archive"}
    return {"description": "synthetic DVM-Car-format images drawn by carcolor (synthetic.seed in the "
                           "configuration); no image is in this archive"}
