use deepsynth::prelude::*;
