//! The footer signature of the signed suites: ECDSA over the SHA-256 or
//! SHA-384 hash of header and body, DER-encoded; the verification key is
//! the compressed point, base64, in the context key `aws-crypto-public-key`
//! (spec `data-format/message-footer.md`, `framework/transitive-requirements.md`
//! "ECDSA"). Both directions run on aws-lc-rs, so they need the `aws-lc`
//! feature; without it the same types exist and refuse with an error that
//! names the feature.

use crate::error::Error;

use super::header::Header;

#[cfg(not(feature = "aws-lc"))]
fn feature_required(what: &'static str) -> Error {
    Error::FeatureRequired { what, feature: "aws-lc" }
}

#[cfg(feature = "aws-lc")]
pub(crate) use imp::{Signer, Verifier};

#[cfg(feature = "aws-lc")]
mod imp {
    use aws_lc_rs::digest::{Context, SHA256, SHA384};
    use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
        UnparsedPublicKey,
    };
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::{Error, Header};
    use crate::error::FormatError;
    use crate::esdk::header::PUBLIC_KEY_CONTEXT_KEY;
    use crate::esdk::suite::Curve;

    /// Hashes header and body as they stream past, then checks the footer.
    pub(crate) struct Verifier {
        digest: Context,
        curve: Curve,
        public_key: Vec<u8>,
    }

    impl Verifier {
        /// A verifier for the key in `header`'s context.
        pub(crate) fn new(header: &Header<'_>) -> Result<Self, Error> {
            let curve = header.suite().curve().ok_or(FormatError::Invalid("signature on an unsigned suite"))?;
            let encoded = header
                .context_value(PUBLIC_KEY_CONTEXT_KEY)
                .ok_or(FormatError::Invalid("encryption context: a signed suite without aws-crypto-public-key"))?;
            let public_key =
                STANDARD.decode(encoded).map_err(|_| FormatError::Invalid("aws-crypto-public-key (not base64)"))?;
            let (digest, len) = match curve {
                Curve::P256 => (Context::new(&SHA256), 33),
                Curve::P384 => (Context::new(&SHA384), 49),
            };
            if public_key.len() != len {
                return Err(FormatError::Invalid(
                    "aws-crypto-public-key (not a compressed point of the suite's curve)",
                )
                .into());
            }
            Ok(Self { digest, curve, public_key })
        }

        pub(crate) fn update(&mut self, bytes: &[u8]) {
            self.digest.update(bytes);
        }

        /// Checks `signature` over everything passed to `update`.
        pub(crate) fn verify(self, signature: &[u8]) -> Result<(), Error> {
            let algorithm = match self.curve {
                Curve::P256 => &ECDSA_P256_SHA256_ASN1,
                Curve::P384 => &ECDSA_P384_SHA384_ASN1,
            };
            UnparsedPublicKey::new(algorithm, &self.public_key)
                .verify_digest(&self.digest.finish(), signature)
                .map_err(|_| Error::Authentication)
        }
    }

    /// A fresh P-384 signing key for one message (suite 0x0578), and the
    /// hash of what it has written so far.
    pub(crate) struct Signer {
        key: EcdsaKeyPair,
        digest: Context,
    }

    impl Signer {
        pub(crate) fn generate() -> Result<Self, Error> {
            let key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)
                .map_err(|_| Error::Io(std::io::Error::other("generating an ECDSA P-384 key failed")))?;
            Ok(Self { key, digest: Context::new(&SHA384) })
        }

        /// The compressed public point, base64: the context value.
        pub(crate) fn public_key_base64(&self) -> Result<String, Error> {
            let point: EcPublicKeyCompressedBin<'_> = self
                .key
                .public_key()
                .as_be_bytes()
                .map_err(|_| Error::Io(std::io::Error::other("encoding an ECDSA public key failed")))?;
            Ok(STANDARD.encode(point.as_ref()))
        }

        pub(crate) fn update(&mut self, bytes: &[u8]) {
            self.digest.update(bytes);
        }

        /// The DER signature over everything passed to `update`.
        pub(crate) fn sign(self) -> Result<Vec<u8>, Error> {
            let signature = self
                .key
                .sign_digest(&self.digest.finish())
                .map_err(|_| Error::Io(std::io::Error::other("ECDSA signing failed")))?;
            Ok(signature.as_ref().to_vec())
        }
    }
}

/// Without aws-lc-rs: the verifier cannot be made.
#[cfg(not(feature = "aws-lc"))]
pub(crate) struct Verifier(std::convert::Infallible);

#[cfg(not(feature = "aws-lc"))]
impl Verifier {
    pub(crate) fn new(_header: &Header<'_>) -> Result<Self, Error> {
        Err(feature_required("verifying the ECDSA signature of a signed AWS Encryption SDK message"))
    }

    pub(crate) fn update(&mut self, _bytes: &[u8]) {
        match self.0 {}
    }

    pub(crate) fn verify(self, _signature: &[u8]) -> Result<(), Error> {
        match self.0 {}
    }
}

/// Without aws-lc-rs: the signer cannot be made.
#[cfg(not(feature = "aws-lc"))]
pub(crate) struct Signer(std::convert::Infallible);

#[cfg(not(feature = "aws-lc"))]
impl Signer {
    pub(crate) fn generate() -> Result<Self, Error> {
        Err(feature_required("writing a signed AWS Encryption SDK message (suite 0x0578)"))
    }

    pub(crate) fn public_key_base64(&self) -> Result<String, Error> {
        match self.0 {}
    }

    pub(crate) fn update(&mut self, _bytes: &[u8]) {
        match self.0 {}
    }

    pub(crate) fn sign(self) -> Result<Vec<u8>, Error> {
        match self.0 {}
    }
}
