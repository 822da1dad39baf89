function [psnr_sets, ssim_sets] = evaluate_PSNR_SSIM(result_root, gt_root, datasets)
% EVALUATE_PSNR_SSIM  Y-channel PSNR / SSIM of derained results, as the deraining papers report them.
%
%   evaluate_PSNR_SSIM                       % the folders configured below
%   evaluate_PSNR_SSIM('results/DMSR')       % another model's results
%   evaluate_PSNR_SSIM(result_root, gt_root, {'Rain100H', 'Rain100L'})
%   [psnr_sets, ssim_sets] = evaluate_PSNR_SSIM(...)   % per-set means, in the order of datasets
%
% For each dataset, pairs <result_root>/<dataset>/* with <gt_root>/<dataset>/target/*
% by file name ("rain-001.png" pairs with "norain-001.png", "001_rain" with
% "001_clean", as data/folders.py does); a file without a partner, or a pair
% of different sizes, is an error naming it.  Scores, per image, then
% averaged per set; "Average" is the mean of the set means:
%   * Y of ITU-R BT.601 YCbCr, computed exactly and rounded half up to 0..255 (what
%     rgb2ycbcr gives for uint8, except that its rounding of the 194 colours whose Y
%     ends in .5 depends on the machine; docs/SCORING.md, "The Y channel");
%   * PSNR = 20 log10(255 / RMSE);
%   * SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K = [0.01 0.03],
%     L = 255, 'valid' filtering, mean of the SSIM map.
% The same numbers as evaluate.py (metrics/psnr_ssim.py).  Runs unchanged in MATLAB
% (parfor uses the Parallel Computing Toolbox when present, else runs serially)
% and in GNU Octave (serially); no toolbox or package is needed.
%
% From a shell:  octave-cli --eval "evaluate_PSNR_SSIM('results/DMSR')"

% ---- configuration: edit these, or pass them as arguments ----------------------
if nargin < 1 || isempty(result_root)
    result_root = 'results/DMSR';                        % holds <dataset>/*.png
end
if nargin < 2 || isempty(gt_root)
    gt_root = 'Datasets/Synthetic_Rain_Datasets/test';   % holds <dataset>/target/*
end
if nargin < 3 || isempty(datasets)
    datasets = {'Test100', 'Rain100H', 'Rain100L', 'Test2800', 'Test1200'};
end
% ---------------------------------------------------------------------------------
if ischar(datasets)
    datasets = {datasets};
end

psnr_sets = [];
ssim_sets = [];
names = {};
for d = 1:numel(datasets)
    name = datasets{d};
    result_dir = fullfile(result_root, name);
    gt_dir = fullfile(gt_root, name, 'target');
    if ~exist(result_dir, 'dir')
        warning('evaluate_PSNR_SSIM:skip', 'skipping %s: %s not found', name, result_dir);
        continue;
    end
    if ~exist(gt_dir, 'dir')
        error('evaluate_PSNR_SSIM:missing', '%s: target folder %s not found', name, gt_dir);
    end
    [res_files, gt_files] = pair_files(result_dir, gt_dir);
    n = numel(res_files);
    psnrs = zeros(n, 1);
    ssims = zeros(n, 1);
    parfor i = 1:n
        res = read_rgb8(res_files{i});
        gt = read_rgb8(gt_files{i});
        if ~isequal(size(res), size(gt))
            error('evaluate_PSNR_SSIM:size', 'size mismatch: %s is %dx%d but %s is %dx%d', ...
                  res_files{i}, size(res, 2), size(res, 1), gt_files{i}, size(gt, 2), size(gt, 1));
        end
        y_res = rgb_to_y(res);
        y_gt = rgb_to_y(gt);
        psnrs(i) = psnr_index(y_res, y_gt);
        ssims(i) = ssim_index(y_res, y_gt);
    end
    names{end + 1} = name; %#ok<AGROW>
    psnr_sets(end + 1) = mean(psnrs); %#ok<AGROW>
    ssim_sets(end + 1) = mean(ssims); %#ok<AGROW>
    fprintf('%-12s n=%-5d PSNR: %.6f  SSIM: %.6f\n', name, n, psnr_sets(end), ssim_sets(end));
end
if isempty(names)
    error('evaluate_PSNR_SSIM:none', 'no results for any of the datasets under %s', result_root);
end
fprintf('%-12s         PSNR: %.6f  SSIM: %.6f\n', 'Average', mean(psnr_sets), mean(ssim_sets));
end


function files = list_images(folder)
% Image files directly inside folder, sorted by name.
exts = {'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'};
entries = dir(folder);
files = {};
for k = 1:numel(entries)
    if entries(k).isdir
        continue;
    end
    [~, ~, ext] = fileparts(entries(k).name);
    if any(strcmpi(ext, exts))
        files{end + 1} = entries(k).name; %#ok<AGROW>
    end
end
files = sort(files);
end


function key = pair_key(filename)
% The stem without one leading/trailing rain or clean marker (as data/folders.py).
[~, stem] = fileparts(filename);
marker = '(?:no)?rainy?|clean|gt';
key = regexprep(stem, ['^(?:' marker ')[-_]'], '', 'once', 'ignorecase');
key = regexprep(key, ['[-_](?:' marker ')$'], '', 'once', 'ignorecase');
if isempty(key)
    key = stem;
end
end


function [res_paths, gt_paths] = pair_files(result_dir, gt_dir)
% Pair the images of the two folders by pair_key; anything unpaired is an error listing it.
res_names = list_images(result_dir);
gt_names = list_images(gt_dir);
if isempty(res_names)
    error('evaluate_PSNR_SSIM:empty', 'no images in %s', result_dir);
end
res_keys = cellfun(@pair_key, res_names, 'UniformOutput', false);
gt_keys = cellfun(@pair_key, gt_names, 'UniformOutput', false);
problems = {};
problems = [problems, clashes(res_names, res_keys, result_dir)];
problems = [problems, clashes(gt_names, gt_keys, gt_dir)];
[found, loc] = ismember(res_keys, gt_keys);
only_res = res_names(~found);
only_gt = gt_names(~ismember(gt_keys, res_keys));
if ~isempty(only_res)
    problems{end + 1} = sprintf('%d in %s without a partner in %s: %s', numel(only_res), result_dir, ...
                                gt_dir, strjoin(only_res, ', '));
end
if ~isempty(only_gt)
    problems{end + 1} = sprintf('%d in %s without a partner in %s: %s', numel(only_gt), gt_dir, ...
                                result_dir, strjoin(only_gt, ', '));
end
if ~isempty(problems)
    error('evaluate_PSNR_SSIM:pairing', 'images do not pair up by name:\n  %s', strjoin(problems, sprintf('\n  ')));
end
res_paths = cellfun(@(f) fullfile(result_dir, f), res_names, 'UniformOutput', false);
gt_paths = cellfun(@(f) fullfile(gt_dir, f), gt_names(loc), 'UniformOutput', false);
end


function msgs = clashes(names, keys, folder)
% Messages for files of one folder that share a pairing key.
msgs = {};
[uniq, ~, idx] = unique(keys);
for k = 1:numel(uniq)
    same = names(idx == k);
    if numel(same) > 1
        msgs{end + 1} = sprintf('%s: %s all pair as ''%s''', folder, strjoin(same, ', '), uniq{k}); %#ok<AGROW>
    end
end
end


function img = read_rgb8(path)
% 8-bit RGB, as utils/image_io.read_image: gray replicated, alpha dropped, 16-bit rounded to 8-bit.
[img, map] = imread(path);
if ~isempty(map)
    img = uint8(ind2rgb(img, map) * 255);
elseif islogical(img)
    img = uint8(img) * 255;
elseif isa(img, 'uint16')
    img = uint8(double(img) / 257);
elseif ~isa(img, 'uint8')
    error('evaluate_PSNR_SSIM:type', '%s: unsupported pixel type %s', path, class(img));
end
if size(img, 3) == 1
    img = repmat(img, [1 1 3]);
elseif size(img, 3) > 3
    img = img(:, :, 1:3);
end
end


function y = rgb_to_y(img)
% Y channel (as double holding uint8 values) of a uint8 RGB image, as metrics/psnr_ssim.py:
%   Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded half up (uint8()'s rule),
% computed exactly: the numerator 65481 R + 128553 G + 24966 B + 16 * 255000 is an integer
% below 2^26 (exact in double), and floor((num + 127500) / 255000) rounds it to the nearest
% integer with halves up, on every machine.  rgb2ycbcr gives the same on every colour
% except the 194 whose Y ends in exactly .5, where its floating-point result depends on
% the machine (docs/SCORING.md, "The Y channel").
x = double(img);
num = 65481 * x(:, :, 1) + 128553 * x(:, :, 2) + 24966 * x(:, :, 3) + 16 * 255000;
y = floor((num + 127500) / 255000);
end


function p = psnr_index(a, b)
% PSNR in dB of two Y images (double holding 0..255).
d = a(:) - b(:);
rmse = sqrt(mean(d .^ 2));
p = 20 * log10(255 / rmse);
end


function s = ssim_index(a, b)
% Mean SSIM of two Y images (double holding 0..255): Gaussian 11x11, sigma 1.5, 'valid'.
[gx, gy] = meshgrid(-5:5, -5:5);
w = exp(-(gx .^ 2 + gy .^ 2) / (2 * 1.5 ^ 2));
w = w / sum(w(:));
c1 = (0.01 * 255) ^ 2;
c2 = (0.03 * 255) ^ 2;
mu1 = filter2(w, a, 'valid');
mu2 = filter2(w, b, 'valid');
mu1_sq = mu1 .* mu1;
mu2_sq = mu2 .* mu2;
mu1_mu2 = mu1 .* mu2;
sigma1_sq = filter2(w, a .* a, 'valid') - mu1_sq;
sigma2_sq = filter2(w, b .* b, 'valid') - mu2_sq;
sigma12 = filter2(w, a .* b, 'valid') - mu1_mu2;
ssim_map = ((2 * mu1_mu2 + c1) .* (2 * sigma12 + c2)) ./ ((mu1_sq + mu2_sq + c1) .* (sigma1_sq + sigma2_sq + c2));
s = mean(ssim_map(:));
end
