"""`edgeship --help` (and every subcommand's) is fast and quiet: registering the command modules
imports no TensorFlow, LiteRT, Core ML or kfp (whose C++ start-up logs would print)."""
import subprocess
import sys

HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert", "coremltools", "kfp",
         "google.cloud.storage", "google.cloud.firestore", "google.cloud.aiplatform")

PROBE = f"""
import sys
from edgeship.cli import build_parser
build_parser()
print(",".join(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_registering_the_commands_imports_nothing_heavy():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at registration: {done.stdout.strip()}"
    assert done.stderr == ""


def test_help_prints_only_help():
    code = "import sys; from edgeship.cli import main; sys.exit(main(['--help']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: edgeship" in done.stdout
    assert done.stderr == ""
