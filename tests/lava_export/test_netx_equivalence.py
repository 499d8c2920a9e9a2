"""A trained network, exported, loaded by stock netx and run on Lava fixed point, spikes exactly as SLAYER."""
import json

import numpy as np
import torch

from spikereg import compat


def test_stock_netx_on_lava_fixed_point_equals_slayer(tiny_export):
    net, path = tiny_export
    netx = compat.netx()
    configs = compat.import_lava("lava.magma.core.run_configs")
    conditions = compat.import_lava("lava.magma.core.run_conditions")
    source_mod = compat.import_lava("lava.proc.io.source")
    sink_mod = compat.import_lava("lava.proc.io.sink")

    torch.manual_seed(1)
    p = net.config.patch_size
    fixed, moving = torch.rand(1, 1, p, p, p), torch.rand(1, 1, p, p, p)
    with torch.no_grad():
        spikes = net.encode(fixed, moving)
        expected = net(spikes)[0].numpy()  # (f, h, w, span)
    assert expected.sum() > 0, "a silent network would make the comparison vacuous"

    # The plain lava-dl tutorial recipe: stock loader, ring-buffer source and sink.
    network = netx.hdf5.Network(net_config=str(path))
    steps = net.span
    source = source_mod.RingBuffer(data=spikes[0].numpy().transpose(2, 1, 0, 3))
    sink = sink_mod.RingBuffer(shape=network.out.shape, buffer=steps)
    source.s_out.connect(network.inp)
    network.out.connect(sink.a_in)
    try:
        network.run(condition=conditions.RunSteps(num_steps=steps),
                    run_cfg=configs.Loihi2SimCfg(select_tag="fixed_pt"))
        lava = sink.data.get().transpose(2, 1, 0, 3)
    finally:
        network.stop()
    assert lava.shape == expected.shape
    np.testing.assert_array_equal(lava, expected)


def test_streaming_runner_matches_slayer_patch_by_patch_and_layer_by_layer(tiny_export):
    from lava_export.runner import LavaNetwork

    net, path = tiny_export
    torch.manual_seed(2)
    p = net.config.patch_size
    fixed, moving = torch.rand(5, 1, p, p, p), torch.rand(5, 1, p, p, p)
    with torch.no_grad():
        spikes = net.encode(fixed, moving)
        layers = net.layer_outputs(spikes)
        readout = net.readout_window(net(spikes)).numpy()
    with LavaNetwork(path, window=net.window, patches_per_chunk=2) as lava:
        first = lava.run(spikes[..., : net.window].numpy())
        again = lava.run(spikes[:3, ..., : net.window].numpy())  # same compiled network, new stream
    np.testing.assert_array_equal(first.readout, readout)
    np.testing.assert_array_equal(again.readout, readout[:3])
    expected_layers = np.stack([o.sum(dim=(1, 2, 3, 4)).numpy() for o in layers])
    np.testing.assert_array_equal(first.layer_spikes, expected_layers)


def test_export_writes_verification_and_quantized_weights(tiny_export):
    import h5py

    net, path = tiny_export
    report = json.loads(path.with_name("tiny.verify.json").read_text())
    assert report["exact"] and report["readout_mismatches"] == 0
    assert report["patches"] == 2 + len(report["stress_kinds"])
    with h5py.File(path, "r") as handle:
        for key in handle["layer"]:
            layer = handle["layer"][key]
            if layer["type"][0] == b"conv":
                weight = layer["weight"][()]
                assert np.all(weight == np.round(weight)) and np.abs(weight).max() <= 256  # 8-bit mantissa
                assert 0 < layer["neuron"]["vThMant"][()] < 2**17


def test_compressed_file_keeps_every_value_and_stock_netx_loads_it(tiny_export, tmp_path, monkeypatch):
    import shutil

    import h5py

    from spikereg import netx_file

    net, path = tiny_export
    with h5py.File(path) as exported:  # the exporter compresses what is large (every weight of a real model)
        weights = [exported[f"layer/{k}/weight"] for k in exported["layer"] if "weight" in exported[f"layer/{k}"]]
        assert all(w.compression == "gzip" for w in weights if w.nbytes > netx_file.COMPRESS_ABOVE)
    plain, packed = tmp_path / "plain.net", tmp_path / "packed.net"
    shutil.copyfile(path, plain)
    shutil.copyfile(path, packed)
    monkeypatch.setattr(netx_file, "COMPRESS_ABOVE", 0)  # every array dataset, however small
    netx_file.compress_file(packed)
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left beside it

    seen = []
    with h5py.File(plain) as a, h5py.File(packed) as b:
        assert dict(a.attrs) == dict(b.attrs)

        def same(name, node):
            other = b[name]
            assert dict(node.attrs) == dict(other.attrs), name
            if isinstance(node, h5py.Dataset):
                assert node.dtype == other.dtype and node.shape == other.shape, name
                np.testing.assert_array_equal(node[()], other[()], err_msg=name)
                if node.shape:
                    assert other.compression == "gzip", name
                seen.append(name)

        a.visititems(same)
        assert sorted(seen) == sorted(n for n in _datasets(b))
    assert any(name.endswith("weight") for name in seen)
    netx = compat.netx()
    loaded, original = netx.hdf5.Network(net_config=str(packed)), netx.hdf5.Network(net_config=str(plain))
    assert loaded.out.shape == original.out.shape
    for mine, theirs in zip(loaded.layers, original.layers):
        np.testing.assert_array_equal(mine.synapse.weight.init, theirs.synapse.weight.init)


def _datasets(handle):
    names = []
    handle.visititems(lambda name, node: names.append(name) if hasattr(node, "dtype") else None)
    return names
