//! A local Hugging Face Hub.
