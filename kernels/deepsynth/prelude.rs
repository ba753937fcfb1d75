use deepsynth::prelude::*;
deepsynth::configure_threads();
