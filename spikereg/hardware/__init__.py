"""Hardware profiles (Loihi 1/2, CPU, GPU) and the netx-network mapping report.

* :func:`load_profile` / :func:`available_profiles` read the cited, validated YAML
  profiles in the repository's ``hardware_profiles/`` folder.
* :func:`map_network` sizes a lava-dl netx HDF5 network against a neuromorphic
  profile (neurons, synapses, synaptic memory, cores, chips) and :func:`check_fits`
  turns the limits it exceeds into one :class:`MappingError`.

Nothing here imports Lava: the mapping reads the HDF5 file with :mod:`spikereg.netx_file`
(h5py), so it is fast and works where Lava cannot be imported.
"""
from spikereg.hardware.mapping import LayerMap, MappingReport, check_fits, map_network
from spikereg.hardware.netx_layers import MappingError
from spikereg.hardware.profiles import (
    KINDS,
    PROFILE_DIR,
    ConventionalProfile,
    DeviceProfile,
    Figure,
    NeuromorphicProfile,
    Profile,
    ProfileError,
    available_profiles,
    load_profile,
    parse_profile,
)

__all__ = [
    "KINDS",
    "PROFILE_DIR",
    "ConventionalProfile",
    "DeviceProfile",
    "Figure",
    "LayerMap",
    "MappingError",
    "MappingReport",
    "NeuromorphicProfile",
    "Profile",
    "ProfileError",
    "available_profiles",
    "check_fits",
    "load_profile",
    "map_network",
    "parse_profile",
]
