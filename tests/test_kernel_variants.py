"""The kernel build variants are one table (bench.measure.kernel.VARIANTS), and the host-specific
mitigation arguments are data that says where they came from (kernel/mitigations.json)."""
from bench.measure import environment, kernel


def test_every_variant_is_one_row_with_its_fragments_on_disk():
    for name, v in kernel.VARIANTS.items():
        # A tinyconfig variant starts with the benchmark's fragment; the twin starts from the host's config.
        assert v.name == name and v.description
        assert v.fragments[0] == ("config.fragment" if v.base == "tinyconfig" else "config.twin.fragment")
        assert all((kernel.KERNEL_DIR / f).is_file() for f in v.fragments)
        assert kernel.LOCALVERSIONS[name] == v.localversion
    assert len({v.localversion for v in kernel.VARIANTS.values()}) == len(kernel.VARIANTS)


def test_an_unpatched_variant_applies_no_patch_and_asks_for_no_patch_option():
    for v in kernel.VARIANTS.values():
        assert bool(kernel.patches(v.name)) == v.patched
        if not v.patched:
            assert not any(k.startswith(kernel.PATCH_OPTIONS) for k in kernel.fragment_options(v.name))


def test_the_mitigation_arguments_record_the_host_they_were_read_on():
    m = kernel.load_mitigations()
    assert m.tcg_args and all("=" in a for a in m.tcg_args) and m.kvm_args == ()
    assert m.host["cpu_model"] and m.host["kernel"] and m.host["cmdline"]
    assert m.read["date"] and "/sys/devices/system/cpu/vulnerabilities" in m.read["command"]
    assert kernel.boot_args("mitigations", "tcg") == kernel.BOOT_ARGS["mitigations"] == m.tcg_args
    assert kernel.boot_args("mitigations", "kvm") == m.kvm_args
    # the twin's are the running host's own indirect calls (tests/test_kernel_twin.py), where it says any
    twin = (*kernel.host_indirect_branch_args(), *kernel.host_unaffected_args(), *environment.memory_cgroup_arg())
    assert dict(kernel.BOOT_ARGS) == {"debug": ("acpi=off",), "mitigations": m.tcg_args, "kvm": m.tcg_args,
                                      **({"twin": twin} if twin else {})}
