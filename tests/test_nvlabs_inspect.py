"""`legato inspect FILE.pkl` shows what an NVlabs network pickle holds, as a table or JSON."""

import json

import torch

from legato.cli.main import main
from legato.generators.nvlabs import write_network_pickle
from legato.generators.stylegan2.networks import StyleGAN2Network, network_parts

KWARGS = dict(z_dim=16, c_dim=2, w_dim=24, img_resolution=16, img_channels=3,
              mapping_kwargs=dict(num_layers=3), channel_base=128, channel_max=8)


def _fixture(path, module_src="# placeholder\n"):
    torch.manual_seed(0)
    net = StyleGAN2Network(**KWARGS)
    parts = network_parts(net, KWARGS)
    write_network_pickle(path, {"G": parts, "G_ema": parts, "D": None}, module_src=module_src,
                         extra={"training_set_kwargs": {"resolution": 16}})
    return net


def test_inspect_json(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    net = _fixture(tmp_path / "g.pkl", module_src=f"open({str(marker)!r}, 'w')\n")
    assert main(["inspect", str(tmp_path / "g.pkl"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    g = info["networks"]["G_ema"]
    assert (g["class_name"], g["img_resolution"], g["w_dim"], g["num_ws"], g["c_dim"]) == ("Generator", 16, 24, 6, 2)
    assert g["mapping_layers"] == 3
    buffers = sum(b.numel() for _, b in net.named_buffers())
    assert g["parameters"] == sum(p.numel() for p in net.parameters()) and g["tensors"] > 0 and buffers > 0
    assert info["other"]["training_set_kwargs"] == {"resolution": 16} and info["other"]["D"] is None
    assert not marker.exists()


def test_inspect_table_and_errors(tmp_path, capsys):
    _fixture(tmp_path / "g.pkl")
    assert main(["inspect", str(tmp_path / "g.pkl")]) == 0
    out = capsys.readouterr().out
    assert "G_ema" in out and "w_dim" in out and "mapping_layers" in out
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04junk")
    assert main(["inspect", str(tmp_path / "junk.pkl")]) == 2
    assert "not a readable network pickle" in capsys.readouterr().err
