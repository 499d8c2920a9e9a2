"""benchmarks/energy.py on a U-Net graph file: counts from a torch registration, the Lava check on the graph backend
(per-node messages equal to torch's), the graph's energy rows and notes, a section of its own, --load again."""
import json

import accuracy
import energy
import sections
from accuracy_csv import TORCH

HEADING = "## Energy per registration: the tiny U-Net"
ACCURACY = "## Registration accuracy: the tiny U-Net"


def test_a_unet_run_is_costed_edge_by_edge_and_checked_node_by_node_on_lava(tiny_unet, tmp_path, monkeypatch, capsys):
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text(f"# Benchmarks\n\n{ACCURACY}\n\n| method | pairs | EPE (vox) | EPE (mm) | tissue Dice | "
                          "HD95 (mm) | NCC | SDlogJ | % Jacobian <= 0 | s / pair |\n|---|\n"
                          "| ANN twin | 2 | 0.300 | 0.6 | 0.9500 | 2 | 0.98 | 0.1 | 0 | 1 |\n"
                          f"| {TORCH} | 2 | 0.310 | 0.62 | 0.9490 | 2 | 0.98 | 0.1 | 0 | 1 |\n")
    monkeypatch.setattr(energy, "write_section", lambda h, s: sections.write_section(h, s, benchmarks))
    monkeypatch.setattr(energy, "written_means", lambda h: accuracy.written_means(h, benchmarks))
    saved = tmp_path / "run.json"
    argv = ["--model", str(tiny_unet.path), "--spacing", "8", "--lava-patches", "2", "--save", str(saved),
            "--section", HEADING, "--accuracy-section", ACCURACY]
    assert energy.main(argv + ["--write"]) == 0  # 0: Lava's per-node messages equal torch's
    run = json.loads(saved.read_text())
    assert run["lava_equal"] and run["lava_patches"] == 2 and run["model"] == str(tiny_unet.path)
    assert run["lava_counts"] == run["torch_counts"] and len(run["torch_counts"]["layer_spikes"]) == 7
    assert run["pair"] == {"spacing": 8.0, "seed": 0, "max_displacement": 3.0}
    section = sections.read_section(HEADING, benchmarks)
    assert section == capsys.readouterr().out.rstrip("\n") + "\n"
    nodes = ", ".join(f"{name} {count:,}" for name, count in zip(
        ("input", "enc1", "enc2", "bott", "dec2", "dec1", "out"), run["torch_counts"]["layer_spikes"]))
    for text in (f"with the model `{tiny_unet.path}` (a spiking U-Net, graph file: every patch from rest)",
                 "input and per-node messages **equal**",
                 f"Lava check, 2 patches with brain (iteration 1), messages per node, torch = Lava: {nodes}",
                 "every patch from rest, no drain steps", "every one on a nonzero weight",
                 "neither stored nor charged", "skip edges (enc2->dec2, enc1->dec1) wait up to 3 steps",
                 "nodes input ", "**main estimate**", "**lower bound**",
                 'accuracy beside it (BENCHMARKS.md, "Registration accuracy: the tiny U-Net"): the SNN in SLAYER '
                 "has EPE 0.310 / tissue Dice 0.9490 against its twin's 0.300 / 0.9500", "0.0010 Dice behind"):
        assert text in section, text
    assert "8 mm brain (MNI ICBM152 T1, 25x29x24 voxels" in section

    # the saved counts, rebuilt without registering: the saved run's model and pair, the same rows
    assert energy.main(["--load", str(saved), "--section", HEADING, "--accuracy-section", ACCURACY]) == 0
    again = capsys.readouterr().out.split("```")
    assert [again[0], again[2].strip()] == [section.split("```")[0], section.split("```")[2].strip()]
    assert energy.accuracy_line(None).startswith("- accuracy beside it: not cited")  # another model's: none
    assert "no table under `## Nowhere`" in energy.accuracy_line("## Nowhere")
