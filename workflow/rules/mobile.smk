# The phone app with one export bundle: results/mobile/ (serve it with `make serve-app`).
import hashlib

MOBILE = config["mobile"]
MOBILE_DIR = Path(workflow.basedir) / "mobile"


def mobile_digest():
    """The app's own source, so editing it rebuilds the app (and only then)."""
    h = hashlib.sha256()
    for f in sorted((MOBILE_DIR / "src").rglob("*")) + [MOBILE_DIR / "build.mjs", MOBILE_DIR / "package-lock.json"]:
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]


rule mobile:
    localrule: True  # cheap: on a cluster it runs on the submitting host
    input:
        bundle=lambda wc: f"results/export/{MOBILE['model']}",
    output:
        directory("results/mobile"),
    params:
        node=MOBILE["node"],
        build=MOBILE_DIR / "build.mjs",
        src=mobile_digest(),
    log:
        "results/logs/mobile.log",
    benchmark:
        "results/benchmarks/mobile.tsv",
    threads: 1
    resources:
        mem_mb=mem_mb("mobile"),  # it reads and hashes the whole bundle
        runtime=runtime("mobile"),
    shell:
        "{params.node} {params.build} --bundle {input.bundle}/bundle --out {output} > {log} 2>&1"
