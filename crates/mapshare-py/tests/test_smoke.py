import mapshare


def test_the_package_imports_its_native_module(tmp_path):
    region = mapshare.Region.create(tmp_path / "f", 4096)
    assert len(region) == 4096
    region.close()
